"""rcmg.workflow.cli.options: an options dataclass from the parsed arguments, loudly
refusing a CLI that leaves a field out."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rcmg.workflow import cli


@dataclass(frozen=True)
class Opts:
    seed: int = 0
    names: tuple[str, ...] = ()  # a tuple default
    paths: tuple[Path, ...] = field(default_factory=tuple)  # a tuple factory
    scales: tuple[float, float] | None = None  # a tuple by its annotation only
    items: list[int] = field(default_factory=list)  # a list field stays a list
    ratings: bool = True


def _parser() -> argparse.ArgumentParser:
    p = cli.parser(None)
    p.add_argument("--seed", type=int, default=cli.default(Opts, "seed"))
    p.add_argument("--names", nargs="*", default=list(cli.default(Opts, "names")))
    p.add_argument("--paths", type=Path, nargs="*", default=[])
    p.add_argument("--scales", type=float, nargs=2, default=None)
    p.add_argument("--items", type=int, nargs="*", default=[])
    p.add_argument("--no-ratings", action="store_true")
    p.add_argument("--out", type=Path)  # CLI-only: not an option
    return p


def test_fields_come_from_same_named_arguments_lists_as_tuples_where_tuples():
    args = _parser().parse_args(
        "--seed 7 --names a b --paths x y --scales 1 2 --items 3 4 --out o".split()
    )
    opts = cli.options(Opts, args, ratings=not args.no_ratings)
    assert opts == Opts(
        seed=7, names=("a", "b"), paths=(Path("x"), Path("y")), scales=(1.0, 2.0), items=[3, 4]
    )
    assert type(opts.names) is tuple and type(opts.items) is list
    # defaults: the dataclass's own, through cli.default; overrides win over arguments
    args = _parser().parse_args(["--no-ratings"])
    assert cli.options(Opts, args, ratings=False, seed=3) == Opts(seed=3, ratings=False)


def test_a_field_without_argument_or_override_fails_naming_it():
    args = _parser().parse_args([])
    with pytest.raises(cli.OptionsError, match=r"Opts\.ratings: no --ratings argument"):
        cli.options(Opts, args)  # --no-ratings needs its override
    with pytest.raises(cli.OptionsError, match="Opts has no field.* rating"):
        cli.options(Opts, args, ratings=True, rating=False)


def test_the_failure_is_a_bug_with_its_traceback_not_an_exit_2_input_error():
    """cli.main turns ValueErrors into one line and exit 2; a CLI that forgot an option is
    a programming error and must not look like bad user input."""
    assert not issubclass(cli.OptionsError, ValueError)

    def run(args):
        cli.options(Opts, args)

    with pytest.raises(cli.OptionsError):
        cli.main(_parser(), run, [])
