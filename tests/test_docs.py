"""The README and the docs site say nothing the code contradicts: every `petclick <command> --option`
they write exists in that command's parser, the defaults they quote are the presets' and the
post-processing's, and they refer to no file outside the repository. (The site's links, anchors,
pages and API references are checked by `mkdocs build --strict` in .ci/run.)"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from petclick.cli import build_parser
from petclick.config.presets import AUTOPET, DEMO
from petclick.core.yamlio import read_yaml
from petclick.postprocess import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").rglob("*.md"))
TEXTS = {p.relative_to(ROOT).as_posix(): p.read_text() for p in [ROOT / "README.md", *DOCS]}
COMMAND = re.compile(r"\bpetclick ([a-z][a-z-]*)")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
#: Where a command's options end on a line: a code span's end, a table cell, a shell comment or operator.
END = re.compile(r"`|\s\|\s|\s#|&&|;|\bpetclick ")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _lines(text: str):
    """Lines with shell continuations (a trailing backslash) joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def cli_mentions(text: str, commands: set[str]) -> list[tuple[str, str, str]]:
    """(command, option, line) for every `petclick <command> ... --option` written on one line."""
    found = []
    for line in _lines(text):
        for m in COMMAND.finditer(line):
            if m.group(1) not in commands:
                continue
            rest = line[m.end():]
            stop = END.search(rest)
            for opt in OPTION.findall(rest[:stop.start()] if stop else rest):
                found.append((m.group(1), opt, line.strip()))
    return found


def test_the_option_scanner_reads_code_tables_and_continuations():
    text = ("`petclick predict --models DIR [--k K \\| --all-steps]` and `--not-this`\n"
            "    petclick interactive --predictor x \\\n        --datalist d.json   # --comment\n"
            "petclick demo --out x && petclick label --port 1 | --cell")
    got = [(c, o) for c, o, _ in cli_mentions(text, {"predict", "interactive", "demo", "label"})]
    assert got == [("predict", "--models"), ("predict", "--k"), ("predict", "--all-steps"),
                   ("interactive", "--predictor"), ("interactive", "--datalist"), ("demo", "--out"),
                   ("label", "--port")]


def test_every_documented_option_exists():
    parsers = _subparsers()
    mentions = [(name, *m) for name, text in TEXTS.items() for m in cli_mentions(text, set(parsers))]
    assert len(mentions) > 100, "the scanner found too few options: is it still reading the docs?"
    assert {c for _, c, _, _ in mentions} >= {"demo", "predict", "gc", "interactive", "evaluate", "label",
                                            "phantoms", "datalist", "hpo", "simulate-clicks"}
    unknown = [f"{name}: petclick {cmd} has no {opt}: {line}" for name, cmd, opt, line in mentions
               if opt not in parsers[cmd]._option_string_actions]
    assert not unknown, "\n".join(unknown)


def _demo_recipe() -> str:
    """The demo preset's snapshot run as the docs write it: first cycle + (repeats - 1) x later cycle."""
    ipe = DEMO["training"]["num_iterations_per_epoch"]
    repeats = read_yaml(ROOT / "petclick" / "bundles" / "input.yaml")["num_repeats"]
    return f"{DEMO['training']['num_epochs'] * ipe} + {repeats - 1} x {DEMO['training']['cycle_epochs'] * ipe}"


def _fmt(values) -> str:
    return "x".join(str(v) for v in values)


#: (file, quoted phrase): each phrase is what the docs write, built from the code's defaults.
QUOTES = [
    ("README.md", f"{_demo_recipe()} iterations"),
    ("docs/install.md", f"{_demo_recipe()} iterations"),
    ("petclick/bundles/input.yaml", f"one snapshot run of {_demo_recipe()}"),
    ("docs/training.md", f"per fold one snapshot run ({_demo_recipe().replace(' + 3 x ', ' iterations, then 3 cycles of ')}) "
                         f"at lr {DEMO['training']['lr']:.0e}".replace("e-0", "e-")),
    ("docs/training.md", f"output prior {DEMO['network']['output_prior']}"),
    ("docs/training.md", f"ROI {_fmt(DEMO['data']['roi'])}"),
    ("docs/training.md", f"AdamW lr {AUTOPET['training']['lr']:.0e}".replace("e-0", "e-")),
    ("docs/training.md", f"weight decay {AUTOPET['training']['weight_decay']:.0e}".replace("e-0", "e-")),
    ("docs/training.md", f"{AUTOPET['training']['warmup_epochs']} warm-up epochs"),
    ("docs/training.md", f"ROI {_fmt(AUTOPET['data']['roi'])}"),
    ("docs/training.md", f"overlap {AUTOPET['infer']['overlap']}"),
    ("docs/training.md", "CT window [{:g}, {:g}] HU".format(*AUTOPET["data"]["ct_window"])),
    ("docs/training.md", "PET SUV clipped to [{:g}, {:g}]".format(*AUTOPET["data"]["pet_clip"])),
    ("docs/training.md", f"(`{AUTOPET['clicks']['curriculum']['count']}` count, "
                         f"`{AUTOPET['clicks']['encoding']['encoding']}` encoding)"),
    ("docs/prediction.md", f"`grow: {DEFAULT_CONFIG['click_consistency']['grow']}` (default)"),
    ("docs/prediction.md", f"above {DEFAULT_CONFIG['click_consistency']['suv_fraction']:.0%} of its local peak, "
                           f"within {DEFAULT_CONFIG['click_consistency']['max_radius_mm']:g} mm"),
    ("docs/real-data.md", f"ROI {_fmt(AUTOPET['data']['roi'])}, {AUTOPET['training']['repeats']} repeats"),
]


@pytest.mark.parametrize("path,phrase", QUOTES, ids=[f"{p}:{q[:30]}" for p, q in QUOTES])
def test_quoted_defaults_match_the_code(path, phrase):
    text = " ".join((ROOT / path).read_text().replace("#", " ").split())   # YAML comments wrap with a '#'
    assert " ".join(phrase.split()) in text, f"{path} should say {phrase!r} (the code's default)"


def test_post_processing_is_on_by_default_as_the_docs_say():
    """evaluation.md and prediction.md say every command ships click consistency and nothing else."""
    assert [r for r in DEFAULT_CONFIG if isinstance(DEFAULT_CONFIG[r], dict) and DEFAULT_CONFIG[r]["enabled"]] == \
        ["click_consistency"]
    parsers = _subparsers()
    for cmd in ("predict", "gc", "interactive"):
        assert parsers[cmd]._option_string_actions["--postprocess"].default == "default", cmd


def test_nothing_refers_to_files_outside_the_repository():
    tracked = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in {".md", ".py", ".yaml", ".yml", ".cfg", ".sh", ".txt"}
               and not {".git", ".venv", "build", "node_modules"} & set(p.relative_to(ROOT).parts)]
    pattern = re.compile(r"DESIGN\.md|/work/|helper_notes")
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in tracked if p != Path(__file__).resolve()
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_the_readme_links_only_to_files_that_exist():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXTS["README.md"])
    assert len(links) > 15
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, missing
