"""Style bank: building and filtering, FAISS retrieval, blending maths."""
