//! Extraction of hostile and damaged archives: nothing may be written outside the target
//! directory, whatever the entry names, symlinks in the archive or symlinks already on disk.

mod common;

use common::{Fixture, mode, mtime};
use glrunner_archive::{ExtractError, Refusal, extract_zip};
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

/// What a crafted archive holds.
enum Item<'a> {
    File(&'a str, &'a [u8]),
    FileMode(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

fn craft(items: &[Item<'_>]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::from_date_and_time(2021, 3, 4, 5, 6, 8).unwrap());
    for item in items {
        match item {
            Item::File(name, data) => {
                zip.start_file(*name, opts).unwrap();
                zip.write_all(data).unwrap();
            }
            Item::FileMode(name, data, mode) => {
                zip.start_file(*name, opts.unix_permissions(*mode)).unwrap();
                zip.write_all(data).unwrap();
            }
            Item::Dir(name) => zip.add_directory(*name, opts).unwrap(),
            Item::Link(name, target) => zip.add_symlink(*name, *target, opts).unwrap(),
        }
    }
    zip.finish().unwrap().into_inner()
}

struct Scene {
    f: Fixture,
    dest: PathBuf,
    archive: PathBuf,
}

/// A target directory `project/` with an `outside/` sibling that must stay untouched.
fn scene(items: &[Item<'_>]) -> Scene {
    let f = Fixture::new();
    fs::create_dir(f.outside().join("outside")).unwrap();
    let archive = f.outside().join("a.zip");
    fs::write(&archive, craft(items)).unwrap();
    Scene {
        dest: f.project.clone(),
        archive,
        f,
    }
}

impl Scene {
    fn outside(&self) -> PathBuf {
        self.f.outside().join("outside")
    }

    fn outside_is_empty(&self) -> bool {
        fs::read_dir(self.outside()).unwrap().next().is_none()
            && !self.f.outside().join("evil.txt").exists()
    }

    fn reasons(report: &glrunner_archive::ExtractReport) -> Vec<(&str, Refusal)> {
        report
            .refused
            .iter()
            .map(|r| (r.name.as_str(), r.reason))
            .collect()
    }
}

#[test]
fn traversal_and_absolute_names_are_refused() {
    let f = Fixture::new();
    let abs_target = f.outside().join("abs-evil.txt");
    let abs_name = abs_target.display().to_string();
    let s = scene(&[
        Item::File("../evil.txt", b"x"),
        Item::File("a/../../evil.txt", b"x"),
        Item::File("..\\evil.txt", b"x"),
        Item::File(&abs_name, b"x"),
        Item::File("ok/fine.txt", b"fine"),
    ]);
    let report = extract_zip(&s.archive, &s.dest).unwrap();
    assert_eq!(
        Scene::reasons(&report),
        [
            ("../evil.txt", Refusal::ParentTraversal),
            ("a/../../evil.txt", Refusal::ParentTraversal),
            ("..\\evil.txt", Refusal::ParentTraversal),
            (abs_name.as_str(), Refusal::AbsolutePath),
        ]
    );
    assert!(s.outside_is_empty());
    assert!(!abs_target.exists());
    assert_eq!(fs::read(s.dest.join("ok/fine.txt")).unwrap(), b"fine");
    assert_eq!(report.files, 1);
    let lines: Vec<String> = report.messages.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines[0],
        "WARNING: ../evil.txt: paths with \"..\" are not extracted; entry skipped"
    );
}

#[test]
fn symlinks_leading_outside_are_refused() {
    let s = scene(&[
        Item::Link("up", ".."),
        Item::Link("abs", "/etc"),
        Item::Link("deep/up2", "../../outside"),
        Item::Link("inside", "deep"),
        Item::Link("self", "."),
        // `up` was refused, so this lands in a real directory `up/` inside the target.
        Item::File("up/evil.txt", b"x"),
    ]);
    let report = extract_zip(&s.archive, &s.dest).unwrap();
    assert_eq!(
        Scene::reasons(&report),
        [
            ("up", Refusal::SymlinkOutside),
            ("abs", Refusal::SymlinkOutside),
            ("deep/up2", Refusal::SymlinkOutside),
        ]
    );
    assert!(s.outside_is_empty());
    assert_eq!(
        fs::read_link(s.dest.join("inside")).unwrap(),
        Path::new("deep")
    );
    assert_eq!(fs::read_link(s.dest.join("self")).unwrap(), Path::new("."));
    assert!(s.dest.join("up").is_dir());
    assert!(s.dest.join("up/evil.txt").is_file());
}

#[test]
fn writing_through_a_symlink_to_outside_is_refused() {
    // A link already on disk (left by the job) and a link from the archive.
    let s = scene(&[
        Item::File("pre/evil.txt", b"x"),
        Item::File("pre/sub/evil.txt", b"x"),
        Item::Link("inner", "pre"),
        Item::File("inner/evil2.txt", b"x"),
    ]);
    symlink(s.outside(), s.dest.join("pre")).unwrap();
    let report = extract_zip(&s.archive, &s.dest).unwrap();
    assert_eq!(
        Scene::reasons(&report),
        [
            ("pre/evil.txt", Refusal::ThroughSymlinkOutside),
            ("pre/sub/evil.txt", Refusal::ThroughSymlinkOutside),
            ("inner", Refusal::SymlinkOutside),
        ]
    );
    assert!(s.outside_is_empty());
    // With the link refused, `inner/` is an ordinary directory inside the target.
    assert!(fs::symlink_metadata(s.dest.join("inner")).unwrap().is_dir());
    assert!(s.dest.join("inner/evil2.txt").is_file());
}

#[test]
fn links_inside_can_be_written_through() {
    let s = scene(&[
        Item::Dir("real/"),
        Item::Link("alias", "real"),
        Item::File("alias/file.txt", b"through the alias"),
    ]);
    let report = extract_zip(&s.archive, &s.dest).unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(
        fs::read(s.dest.join("real/file.txt")).unwrap(),
        b"through the alias"
    );
}

#[test]
fn a_link_chain_is_resolved_not_read_lexically() {
    // d/l -> .. is the target directory itself (fine); m -> d/l/.. is lexically `d` but really
    // the parent of the target directory.
    let s = scene(&[
        Item::Dir("d/"),
        Item::Link("d/l", ".."),
        Item::Link("m", "d/l/.."),
        Item::File("m/evil.txt", b"x"),
    ]);
    let report = extract_zip(&s.archive, &s.dest).unwrap();
    let reasons = Scene::reasons(&report);
    assert_eq!(reasons[0], ("m", Refusal::SymlinkOutside));
    assert!(!s.f.outside().join("evil.txt").exists());
    assert!(s.outside_is_empty());
}

#[test]
fn a_link_made_unsafe_by_a_later_entry_is_removed() {
    // When `m` is created, `d/l` does not exist yet, so `m -> d/l/..` resolves to `d` (inside);
    // the later `d/l -> ..` turns it into the parent of the target. The final check removes it.
    let s = scene(&[
        Item::Dir("d/"),
        Item::Link("m", "d/l/.."),
        Item::Link("d/l", ".."),
    ]);
    let report = extract_zip(&s.archive, &s.dest).unwrap();
    assert_eq!(Scene::reasons(&report), [("m", Refusal::SymlinkOutside)]);
    assert!(
        fs::symlink_metadata(s.dest.join("m")).is_err(),
        "m was removed"
    );
    assert_eq!(report.symlinks, 1);
}

#[test]
fn existing_files_and_links_are_replaced_not_written_through() {
    let s = scene(&[
        Item::File("a.txt", b"new content"),
        Item::File("victim", b"replaced link"),
        Item::FileMode("run.sh", b"#!/bin/sh\n", 0o755),
    ]);
    fs::write(s.dest.join("a.txt"), "old").unwrap();
    common::set_mode(&s.dest.join("a.txt"), 0o400);
    let precious = s.outside().join("precious");
    fs::write(&precious, "keep me").unwrap();
    symlink(&precious, s.dest.join("victim")).unwrap();

    let report = extract_zip(&s.archive, &s.dest).unwrap();
    assert!(report.refused.is_empty());
    assert_eq!(fs::read(s.dest.join("a.txt")).unwrap(), b"new content");
    assert_eq!(fs::read(&precious).unwrap(), b"keep me");
    assert!(
        fs::symlink_metadata(s.dest.join("victim"))
            .unwrap()
            .is_file()
    );
    assert_eq!(mode(&s.dest.join("run.sh")), 0o755);
    // 2021-03-04T05:06:08Z from the DOS fields (no extended timestamp in this archive).
    assert_eq!(mtime(&s.dest.join("run.sh")), 1_614_834_368);
}

#[test]
fn a_non_empty_directory_in_the_way_is_kept() {
    let s = scene(&[
        Item::File("d", b"file over dir"),
        Item::File("e", b"file over empty dir"),
    ]);
    fs::create_dir_all(s.dest.join("d/child")).unwrap();
    fs::create_dir(s.dest.join("e")).unwrap();
    let report = extract_zip(&s.archive, &s.dest).unwrap();
    assert_eq!(Scene::reasons(&report), [("d", Refusal::DirectoryInTheWay)]);
    assert!(s.dest.join("d/child").is_dir());
    assert_eq!(fs::read(s.dest.join("e")).unwrap(), b"file over empty dir");
}

#[test]
fn missing_and_damaged_archives_are_errors_with_a_fix() {
    let f = Fixture::new();
    let missing = f.outside().join("missing.zip");
    let err = extract_zip(&missing, &f.project).unwrap_err();
    assert!(matches!(err, ExtractError::Open { .. }));
    assert!(err.to_string().contains("Fix:"));

    let garbage = f.outside().join("garbage.zip");
    fs::write(&garbage, b"this is not a zip archive at all").unwrap();
    let err = extract_zip(&garbage, &f.project).unwrap_err();
    assert!(matches!(err, ExtractError::Format { .. }), "{err:?}");
    assert!(err.to_string().contains("delete"), "{err}");
}

#[test]
fn corrupted_contents_fail_the_crc_check() {
    let f = Fixture::new();
    let mut bytes = craft(&[Item::File("data.txt", b"hello world, hello zip")]);
    let at = bytes
        .windows(5)
        .position(|w| w == b"hello")
        .expect("stored data is in the archive");
    bytes[at] = b'j';
    let archive = f.outside().join("bad.zip");
    fs::write(&archive, bytes).unwrap();
    let err = extract_zip(&archive, &f.project).unwrap_err();
    match &err {
        ExtractError::Entry { name, .. } => assert_eq!(name, "data.txt"),
        other => panic!("expected an entry error, got {other:?}"),
    }
}

#[test]
fn special_files_and_git_paths_are_reported() {
    let f = Fixture::new();
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let fifo = zip::write::SimpleFileOptions::default().external_attributes(0o010_644 << 16);
    zip.start_file("pipe", fifo).unwrap();
    zip.start_file(".git/config", SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"[core]").unwrap();
    let archive = f.outside().join("special.zip");
    fs::write(&archive, zip.finish().unwrap().into_inner()).unwrap();

    let report = extract_zip(&archive, &f.project).unwrap();
    let lines: Vec<String> = report.messages.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "WARNING: File ignored: \"pipe\"",
            "WARNING: Part of .git directory is on the list of files to extract",
            "WARNING: This may introduce unexpected problems",
        ]
    );
    assert!(fs::symlink_metadata(f.path("pipe")).is_err());
    assert!(f.path(".git/config").is_file());
}

#[test]
fn target_directory_is_created() {
    let f = Fixture::new();
    let archive = f.outside().join("a.zip");
    fs::write(&archive, craft(&[Item::File("x/y.txt", b"y")])).unwrap();
    let dest = f.outside().join("new/target");
    extract_zip(&archive, &dest).unwrap();
    assert_eq!(fs::read(dest.join("x/y.txt")).unwrap(), b"y");
}

#[test]
fn owners_are_restored_when_running_as_root() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not running as root; owners are left alone, nothing to check");
        return;
    }
    let f = Fixture::new();
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let mut opts = zip::write::FullFileOptions::default();
    let mut field = vec![1u8, 4];
    field.extend_from_slice(&12_345u32.to_le_bytes());
    field.push(4);
    field.extend_from_slice(&23_456u32.to_le_bytes());
    opts.add_extra_field(0x7875, field, false).unwrap();
    zip.start_file("owned.txt", opts).unwrap();
    zip.write_all(b"mine").unwrap();
    let archive = f.outside().join("owned.zip");
    fs::write(&archive, zip.finish().unwrap().into_inner()).unwrap();

    let report = extract_zip(&archive, &f.project).unwrap();
    assert!(report.messages.is_empty(), "{:?}", report.messages);
    let meta = fs::metadata(f.path("owned.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (12_345, 23_456));
}

#[test]
fn gitlab_runner_shaped_entries_extract() {
    // gitlab-runner's legacy writer puts a uid/gid field and a second extended timestamp next to
    // the one Go's zip writer adds; the extended timestamp wins over the DOS time.
    let f = Fixture::new();
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let mut opts = zip::write::FullFileOptions::default()
        .unix_permissions(0o751)
        .last_modified_time(zip::DateTime::from_date_and_time(1999, 1, 1, 0, 0, 0).unwrap())
        .with_extended_timestamp(Some(1_650_000_000), None, None)
        .unwrap();
    let mut ids = vec![1u8, 4];
    ids.extend_from_slice(&0u32.to_le_bytes());
    ids.push(4);
    ids.extend_from_slice(&0u32.to_le_bytes());
    opts.add_extra_field(0x7875, ids, false).unwrap();
    let mut ts = vec![1u8];
    ts.extend_from_slice(&1_650_000_000u32.to_le_bytes());
    opts.add_extra_field(0x5455, ts, false).unwrap();
    zip.start_file("bin/tool", opts.clone()).unwrap();
    zip.write_all(b"#!/bin/sh\n").unwrap();
    zip.add_directory("bin/", opts).unwrap();
    let archive = f.outside().join("legacy.zip");
    fs::write(&archive, zip.finish().unwrap().into_inner()).unwrap();

    let report = extract_zip(&archive, &f.project).unwrap();
    assert!(report.refused.is_empty());
    assert_eq!(fs::read(f.path("bin/tool")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(mode(&f.path("bin/tool")), 0o751);
    assert_eq!(mtime(&f.path("bin/tool")), 1_650_000_000);
    assert_eq!(mtime(&f.path("bin")), 1_650_000_000);
}
