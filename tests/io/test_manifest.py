from __future__ import annotations

import pytest

from pipeline.io.errors import ManifestError, MissingImageError, PathOutsideRootError
from pipeline.io.manifest import check_manifest, read_manifest, resolve_inside


def _dataset(tmp_path, rows: str, files=("a.dcm", "b.dcm")):
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("path,label,patient_id\n" + rows, encoding="utf-8")
    return tmp_path


def test_good_manifest(tmp_path):
    rows = read_manifest(_dataset(tmp_path, "a.dcm,normal,p1\nb.dcm,nodule,p2\n"))
    assert [(r.relpath, r.label, r.patient_id, r.line) for r in rows] == [
        ("a.dcm", "normal", "p1", 2),
        ("b.dcm", "nodule", "p2", 3),
    ]


@pytest.mark.parametrize(
    "rows, message",
    [
        ("missing.dcm,normal,p1\n", "does not exist"),  # row naming a missing file
        ("../outside.dcm,normal,p1\n", "outside the dataset folder"),  # path escaping the root
        ("/etc/passwd,normal,p1\n", "is absolute"),  # absolute path
        ("a.dcm,,p1\n", "empty label"),  # empty label
        ("a.dcm,normal,p1\na.dcm,normal,p1\n", "listed again"),  # duplicate row
    ],
)
def test_each_problem_is_reported_with_its_line(tmp_path, rows, message):
    _, problems = check_manifest(_dataset(tmp_path, rows))
    assert len(problems) == 1 and message in problems[0] and "labels.csv line" in problems[0]
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def test_missing_files_raise_missing_image_error(tmp_path):
    with pytest.raises(MissingImageError):
        read_manifest(_dataset(tmp_path, "nope.dcm,normal,p1\n"))


def test_symlink_out_of_root_is_refused(tmp_path):
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.dcm").symlink_to(outside)
    with pytest.raises(PathOutsideRootError):
        resolve_inside(root, "link.dcm")


def test_non_utf8_and_missing_columns(tmp_path):
    (tmp_path / "labels.csv").write_bytes("path,label\nä.dcm,x\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(tmp_path)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="labels.csv not found"):
        read_manifest(tmp_path)


def test_split_column_is_read_and_checked(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"x")
    (tmp_path / "b.dcm").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("path,label,split\na.dcm,x,test\nb.dcm,y,holdout\n", encoding="utf-8")
    rows, problems = check_manifest(tmp_path)
    assert rows[0].split == "test"
    assert len(problems) == 1 and "split is 'holdout'" in problems[0]


def test_class_folders_are_a_manifest(tmp_path):
    from pipeline.io.manifest import check_manifest

    for name in ("normal/a.dcm", "normal/b.nii.gz", "nodule/series1/IM1", ".hidden/x.dcm"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    rows, problems = check_manifest(tmp_path)
    assert problems == []
    assert [(r.relpath, r.label, r.patient_id) for r in rows] == [
        ("nodule/series1", "nodule", None),
        ("normal/a.dcm", "normal", None),
        ("normal/b.nii.gz", "normal", None),
    ]
