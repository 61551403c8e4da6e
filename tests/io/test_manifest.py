from __future__ import annotations

import pytest

from pipeline.io.errors import ManifestError, MissingImageError, PathOutsideRootError
from pipeline.io.manifest import check_manifest, read_manifest, resolve_inside, write_class_folder_manifest


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


def _class_folders(root, names=("normal/b.png", "normal/a.dcm", "nodule/series1/IM1", "nodule/c.nii.gz")):
    for name in (*names, ".hidden/x.png", "normal/.DS_Store"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"image " + name.encode())
    return root


def test_class_folder_manifest_is_written_sorted_and_reads_back(tmp_path):
    from tests.project import snapshot

    root = _class_folders(tmp_path / "data")
    before = snapshot(root)
    counts = write_class_folder_manifest(root)
    assert counts == {"normal": 2, "nodule": 2}
    assert (root / "labels.csv").read_text(encoding="utf-8").splitlines() == [
        "path,label",
        "nodule/c.nii.gz,nodule",
        "nodule/series1,nodule",
        "normal/a.dcm,normal",
        "normal/b.png,normal",
    ]
    after = snapshot(root)
    assert after.pop("labels.csv")
    after.pop("."), before.pop(".")  # the root's mtime changes with the new file
    assert after == before  # every image and folder untouched
    assert [(r.relpath, r.label) for r in read_manifest(root)] == [
        ("nodule/c.nii.gz", "nodule"),
        ("nodule/series1", "nodule"),
        ("normal/a.dcm", "normal"),
        ("normal/b.png", "normal"),
    ]


def test_class_folder_manifest_above_the_root(tmp_path):
    root = _class_folders(tmp_path / "study" / "images")
    write_class_folder_manifest(root, tmp_path / "study" / "labels.csv")
    assert not (root / "labels.csv").exists()
    assert [r.relpath for r in read_manifest(tmp_path / "study")][0] == "images/nodule/c.nii.gz"


@pytest.mark.parametrize(
    "names, out, message",
    [
        (("normal/a.dcm", "normal/b.dcm", "empty/"), None, "at least two"),  # one class with images
        ((), None, "at least two"),  # no class at all
        (("a/x.png", "b/y.png"), "elsewhere/labels.csv", "relative to its folder"),  # CSV beside, not above, root
    ],
)
def test_class_folder_manifest_refusals(tmp_path, names, out, message):
    root = tmp_path / "data"
    root.mkdir()
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if not name.endswith("/"):
            (root / name).write_bytes(b"x")
    with pytest.raises(ManifestError, match=message):
        write_class_folder_manifest(root, tmp_path / out if out else None)
    assert not (root / "labels.csv").exists()


def test_class_folder_manifest_is_not_overwritten_unless_forced(tmp_path):
    root = _class_folders(tmp_path)
    (root / "labels.csv").write_text("path,label\nmine,x\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="--force"):
        write_class_folder_manifest(root)
    assert (root / "labels.csv").read_text(encoding="utf-8") == "path,label\nmine,x\n"
    write_class_folder_manifest(root, force=True)
    assert (root / "labels.csv").read_text(encoding="utf-8").startswith("path,label\nnodule/c.nii.gz,nodule\n")
