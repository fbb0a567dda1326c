"""The one frame every step CLI runs in: logging, domain errors -> exit 2, option defaults.

A CLI is argument parsing and one call into the library::

    def build_parser() -> argparse.ArgumentParser: ...
    def run(args) -> int | None: ...            # calls the library
    if __name__ == "__main__":
        sys.exit(cli.main(build_parser(), run))

Domain errors (bad input, missing files, refused checkpoints: :class:`InputError` and
its subclasses, the file-system errors a wrong path raises, and the ``ValueError`` the
library's option checks raise) end the step with exit code 2 and ONE line naming the
file and the fix; the traceback goes to the debug log (``--log-level DEBUG``).
Anything else is a bug and keeps its traceback. Defaults come from the library's option
dataclasses (:func:`default`), so a CLI never restates a library default, and
:func:`options` fills such a dataclass from the parsed arguments, refusing one that
leaves a field out.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
from collections.abc import Callable, Sequence

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_INPUT_ERROR = 2


class InputError(ValueError):
    """Bad input the user can fix: the message names the file (or key) and the fix."""


# File-system errors a wrong path raises: reported the same way as InputError.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser showing the CLI's module docstring (its example) as description."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def default(options, name: str):
    """The default of ``name`` in a library option dataclass or function signature.

    One source of truth: a CLI never restates a library default.
    """
    if not dataclasses.is_dataclass(options):
        parameter = inspect.signature(options).parameters[name]
        if parameter.default is inspect.Parameter.empty:
            raise KeyError(f"{options.__name__}({name}) has no default")
        return parameter.default
    options_class = options
    for f in dataclasses.fields(options_class):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{options_class.__name__}.{name} has no default")
    raise KeyError(f"{options_class.__name__} has no field {name!r}")


class OptionsError(TypeError):
    """A CLI that does not fill every field of its options dataclass (a bug, not bad input:
    it keeps its traceback)."""


def _is_tuple_field(f: dataclasses.Field) -> bool:
    if isinstance(f.default, tuple):
        return True
    if f.default_factory is not dataclasses.MISSING and isinstance(f.default_factory(), tuple):
        return True
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return annotation.startswith(("tuple", "Tuple"))


def options(options_class, args: argparse.Namespace, **overrides):
    """``options_class`` (a dataclass) built from the same-named attributes of ``args``.

    ``overrides`` give the fields whose argument has another name or needs converting
    (``ratings=not args.no_ratings``). A list goes into a tuple field as a tuple. A field
    with neither an argument nor an override raises :class:`OptionsError` naming it, so
    an option added to the dataclass cannot be dropped silently by a CLI that forgot it
    (its default would be used without anyone choosing it); so does an override naming
    no field.
    """
    fields = dataclasses.fields(options_class)
    names = {f.name for f in fields}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise OptionsError(f"{options_class.__name__} has no field(s) {', '.join(unknown)}")
    values = {}
    for f in fields:
        if not f.init:
            continue
        if f.name in overrides:
            value = overrides[f.name]
        elif hasattr(args, f.name):
            value = getattr(args, f.name)
        else:
            raise OptionsError(
                f"{options_class.__name__}.{f.name}: no --{f.name.replace('_', '-')} "
                "argument and no override; add the option to the CLI or pass "
                f"{f.name}=... to cli.options"
            )
        if isinstance(value, list) and _is_tuple_field(f):
            value = tuple(value)
        values[f.name] = value
    return options_class(**values)


def one_line(err: BaseException) -> str:
    """The error as one line (multi-line messages are joined with ' | ')."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, PATH_ERRORS) and getattr(err, "filename", None) and err.filename not in text:
        text = f"{text}: {err.filename}"
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


def main(
    arg_parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
    name: str | None = None,
) -> int:
    """Parse ``argv``, set up logging, call ``run(args)``; map domain errors to exit 2."""
    if not any("--log-level" in a.option_strings for a in arg_parser._actions):
        arg_parser.add_argument("--log-level", default="INFO", help="DEBUG shows tracebacks")
    args = arg_parser.parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, force=True)
    log = logging.getLogger(name or arg_parser.prog.removesuffix(".py"))
    try:
        code = run(args)
    except (ValueError, *PATH_ERRORS) as err:  # InputError is a ValueError
        log.debug("traceback", exc_info=True)
        log.error("%s", one_line(err))
        return EXIT_INPUT_ERROR
    return int(code or 0)


def command_line(argv: Sequence[str] | None = None) -> list[str]:
    """The exact command that ran this step (interpreter, script, arguments)."""
    return [sys.executable, *(sys.argv if argv is None else [sys.argv[0], *argv])]
