"""No dead ends: every file the README, docs, configs, code and messages name exists in the
repository, and the KITTI archive list covers every drive of the built-in splits."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from data.splits import ARCHIVES_FILE, SplitEntry, builtin_raw_entries, kitti_archive_urls

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("docs", "data", "configs", "bench", "depth", "common", "tests")
# a repository path as the text names it: docs/own_data.md, data/splits/kitti_archives_to_download.txt
REPO_PATH = re.compile(r"(?<![\w./<*$-])((?:%s)/[\w./-]*\w\.(?:md|txt|yaml|py|sh|json))\b" % "|".join(TOP_LEVEL))
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


SKIP_DIRS = {"runs", "outputs", "venv", "__pycache__"}  # what runs write (and hidden folders)


def _tracked(*suffixes: str) -> list[Path]:
    """The project's text files: everything under the root except hidden and output folders and
    the split lists (data)."""
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(names):
            rel = (Path(folder) / name).relative_to(ROOT)
            if name.endswith(suffixes) and not re.fullmatch(r"data/splits/.*_files.*\.txt", str(rel)):
                files.append(ROOT / rel)
    return files


MARKDOWN = _tracked(".md")
TEXT = [f for f in _tracked(".md", ".py", ".yaml", ".sh", ".toml", ".txt") if f.name != "test_docs.py"]


def test_the_walker_finds_the_pages():
    names = {str(p.relative_to(ROOT)) for p in MARKDOWN}
    assert {"README.md", "docs/training.md", "docs/evaluation.md", "docs/method.md"} <= names
    assert REPO_PATH.findall("see docs/own_data.md, `data/splits/x.txt` and <root>/data/y.txt") == \
        ["docs/own_data.md", "data/splits/x.txt"]


@pytest.mark.parametrize("page", MARKDOWN, ids=[str(p.relative_to(ROOT)) for p in MARKDOWN])
def test_markdown_links_resolve(page):
    for target in MD_LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = target.split("#", 1)[0]
        assert (page.parent / path).exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_named_repository_files_exist():
    # the files docs/extending.md prints for the reader to create (``python file=PATH`` blocks)
    examples = set(re.findall(r"```python file=(\S+)", (ROOT / "docs" / "extending.md").read_text()))
    dead = sorted({f"{f.relative_to(ROOT)}: {name}" for f in TEXT for name in REPO_PATH.findall(f.read_text())
                   if not (ROOT / name).exists() and name not in examples})
    assert not dead, "files named but not in the repository:\n" + "\n".join(dead)


def test_no_reference_to_documents_outside_the_repository():
    outside = re.compile(r"\b(METHOD|ENV|ARCHITECTURE)\.md\b|\bMETHOD §")
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in TEXT for i, line in enumerate(f.read_text().splitlines(), 1)
            if outside.search(line)]
    assert not hits, "references to files outside the repository: " + ", ".join(hits)


# ---------------------------------------------------------------- the KITTI archive list


def test_archive_list_is_generated_from_the_splits_and_covers_every_drive():
    urls = ARCHIVES_FILE.read_text().splitlines()
    assert urls == kitti_archive_urls(builtin_raw_entries())  # python -m data.splits regenerates it
    base = "https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data/"
    entries = builtin_raw_entries()
    folders = {e.folder for e in entries}
    assert len(folders) == 60 and len(entries) == 39810 + 4424 + 697 + 652
    for folder in folders:
        date, drive = folder.split("/")
        assert f"{base}{drive[:-5]}/{drive}.zip" in urls, folder
        assert f"{base}{date}_calib.zip" in urls, folder
    assert len(urls) == len(folders) + len({f.split("/")[0] for f in folders}) == 65
    assert urls[0] == base + "2011_09_26_calib.zip"
    assert base + "2011_09_26_drive_0001/2011_09_26_drive_0001_sync.zip" in urls


def test_archive_urls_reject_non_raw_folders():
    with pytest.raises(ValueError, match="not a KITTI raw folder"):
        kitti_archive_urls([SplitEntry("9", 0, "l")])
