//! Zip archives written by glrunner and extracted again, by glrunner and by Info-ZIP's `unzip`
//! when it is installed: contents, modes, mtimes, symlinks and empty directories survive, and the
//! output is byte-for-byte deterministic.

mod common;

use common::{Fixture, have, mode, mtime, run_ok, set_mode, set_mtime};
use glrunner_archive::{CompressionLevel, Selection, Spec, extract_zip, write_zip, write_zip_file};
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

const T0: u64 = 1_600_000_000;

/// A tree with every kind of entry; the large file is bigger than any internal buffer.
fn fixture() -> Fixture {
    let f = Fixture::new().with(&[
        "bin/tool.sh",
        "src/lib.rs",
        "src/nested/deep/data.json",
        "empty/",
        "private/key.pem",
        "ünïcödé ñame.txt",
    ]);
    let big: String = (0..60_000u32)
        .map(|i| format!("{i:08} {:08x} log line\n", i.wrapping_mul(2_654_435_761)))
        .collect();
    fs::write(f.path("src/big.bin"), &big).unwrap();
    symlink("src/lib.rs", f.path("lib-link")).unwrap();
    symlink("nested/deep", f.path("src/deep-link")).unwrap();
    symlink("does-not-exist", f.path("dangling")).unwrap();
    set_mode(&f.path("bin/tool.sh"), 0o755);
    set_mode(&f.path("private/key.pem"), 0o600);
    set_mode(&f.path("private"), 0o700);
    set_mode(&f.path("empty"), 0o750);
    let files = [
        "bin/tool.sh",
        "src/lib.rs",
        "src/big.bin",
        "src/nested/deep/data.json",
        "private/key.pem",
        "ünïcödé ñame.txt",
    ];
    for (i, name) in files.iter().enumerate() {
        set_mtime(&f.path(name), T0 + 100 * i as u64 + 1);
    }
    // Directory mtimes last: creating entries changes them.
    for (i, dir) in [
        "empty",
        "src/nested/deep",
        "src/nested",
        "src",
        "bin",
        "private",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&f.path(dir), T0 + 10_000 + 2 * i as u64);
    }
    f
}

fn select_all(f: &Fixture) -> Selection {
    f.select(&Spec::paths(["*"]))
}

fn zip_bytes(s: &Selection, level: CompressionLevel) -> Vec<u8> {
    let mut out = Vec::new();
    write_zip(s, &mut out, level).unwrap();
    out
}

/// Compares the extracted tree at `dest` with the source project, entry by entry.
fn assert_same_tree(s: &Selection, dest: &Path, check_dir_times: bool) {
    for (name, entry) in s.entries() {
        let src = s.root().join(name);
        let got = dest.join(name);
        let meta = fs::symlink_metadata(&got).unwrap_or_else(|e| panic!("{name}: {e}"));
        match entry.kind {
            glrunner_archive::EntryKind::Symlink => {
                assert!(meta.file_type().is_symlink(), "{name} is a symlink");
                assert_eq!(
                    fs::read_link(&got).unwrap(),
                    fs::read_link(&src).unwrap(),
                    "{name}"
                );
            }
            glrunner_archive::EntryKind::Directory => {
                assert!(meta.is_dir(), "{name} is a directory");
                assert_eq!(mode(&got), mode(&src), "mode of {name}");
                if check_dir_times {
                    assert_eq!(mtime(&got), mtime(&src), "mtime of {name}");
                }
            }
            _ => {
                assert!(meta.is_file(), "{name} is a file");
                assert_eq!(
                    fs::read(&got).unwrap(),
                    fs::read(&src).unwrap(),
                    "content of {name}"
                );
                assert_eq!(mode(&got), mode(&src), "mode of {name}");
                assert_eq!(mtime(&got), mtime(&src), "mtime of {name}");
            }
        }
    }
}

#[test]
fn round_trip_through_our_extractor() {
    let f = fixture();
    let s = select_all(&f);
    assert!(s.entries().contains_key("empty"));
    assert!(s.entries().contains_key("dangling"));
    let archive = f.outside().join("out.zip");
    fs::write(&archive, zip_bytes(&s, CompressionLevel::Default)).unwrap();

    let dest = f.outside().join("restored");
    let report = extract_zip(&archive, &dest).unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.symlinks, 3);
    assert_eq!(report.files, 6);
    assert_eq!(
        report.files + report.directories + report.symlinks,
        s.len() as u64
    );
    assert_same_tree(&s, &dest, true);
}

#[test]
fn round_trip_through_info_zip_unzip() {
    if !have("unzip") {
        eprintln!("unzip is not installed; skipping the Info-ZIP half");
        return;
    }
    let f = fixture();
    let s = select_all(&f);
    let archive = f.outside().join("out.zip");
    fs::write(&archive, zip_bytes(&s, CompressionLevel::Default)).unwrap();

    run_ok(Command::new("unzip").arg("-tq").arg(&archive));

    let dest = f.outside().join("unzipped");
    run_ok(
        Command::new("unzip")
            .arg("-q")
            .arg(&archive)
            .arg("-d")
            .arg(&dest),
    );
    // unzip sets directory times too, but only for directories it created itself.
    assert_same_tree(&s, &dest, false);
}

#[test]
fn archives_made_by_info_zip_extract_with_our_code() {
    if !have("zip") {
        eprintln!("zip is not installed; skipping");
        return;
    }
    let f = fixture();
    let archive = f.outside().join("infozip.zip");
    run_ok(
        Command::new("zip")
            .args(["-qry"])
            .arg(&archive)
            .arg(".")
            .current_dir(&f.project),
    );
    let dest = f.outside().join("restored");
    let report = extract_zip(&archive, &dest).unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_same_tree(&select_all(&f), &dest, false);
}

#[test]
fn output_is_deterministic() {
    let f = fixture();
    let s = select_all(&f);
    let a = zip_bytes(&s, CompressionLevel::Default);
    let b = zip_bytes(&select_all(&f), CompressionLevel::Default);
    assert_eq!(a, b);

    let p1 = f.outside().join("one/cache.zip");
    let p2 = f.outside().join("two/cache.zip");
    let (_, size1) = write_zip_file(&s, &p1, CompressionLevel::Default).unwrap();
    let (_, size2) = write_zip_file(&s, &p2, CompressionLevel::Default).unwrap();
    assert_eq!(fs::read(&p1).unwrap(), fs::read(&p2).unwrap());
    assert_eq!(size1, size2);
    assert_eq!(size1, fs::metadata(&p1).unwrap().len());
    assert_eq!(fs::read(&p1).unwrap(), a);
}

#[test]
fn entries_are_in_path_order_with_directory_slashes() {
    let f = fixture();
    let s = select_all(&f);
    let bytes = zip_bytes(&s, CompressionLevel::Default);
    let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    let want: Vec<String> = s
        .entries()
        .iter()
        .map(|(n, e)| match e.kind {
            glrunner_archive::EntryKind::Directory => format!("{n}/"),
            _ => n.clone(),
        })
        .collect();
    assert_eq!(names, want);
}

#[test]
fn compression_levels_store_or_deflate() {
    let f = fixture();
    let s = select_all(&f);
    for (level, method) in [
        (CompressionLevel::Fastest, zip::CompressionMethod::Stored),
        (CompressionLevel::Default, zip::CompressionMethod::Deflated),
        (CompressionLevel::Slowest, zip::CompressionMethod::Deflated),
    ] {
        let bytes = zip_bytes(&s, level);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let file = zip.by_name("src/lib.rs").unwrap();
        assert_eq!(file.compression(), method, "{level:?}");
    }
    let fast = zip_bytes(&s, CompressionLevel::Fastest).len();
    let slow = zip_bytes(&s, CompressionLevel::Slowest).len();
    assert!(slow < fast, "deflate is smaller: {slow} < {fast}");
}

/// A writer that cannot seek, like an HTTP request body or a pipe.
struct Pipe(Vec<u8>);

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn streams_to_a_writer_without_seek() {
    let f = fixture();
    let s = select_all(&f);
    let mut pipe = Pipe(Vec::new());
    let report = write_zip(&s, &mut pipe, CompressionLevel::Default).unwrap();
    assert_eq!(report.entries, s.len() as u64);
    assert_eq!(pipe.0, zip_bytes(&s, CompressionLevel::Default));
}

#[test]
fn vanished_and_special_files_are_skipped_with_warnings() {
    let f = Fixture::new().with(&["a.txt", "gone.txt"]);
    nix::unistd::mkfifo(
        &f.path("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let s = f.select(&Spec::paths(["*"]));
    assert_eq!(s.len(), 3);
    fs::remove_file(f.path("gone.txt")).unwrap();
    let mut out = Vec::new();
    let report = write_zip(&s, &mut out, CompressionLevel::Default).unwrap();
    assert_eq!(report.entries, 1);
    let lines: Vec<String> = report.messages.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "WARNING: File ignored: fifo");
    assert!(
        lines[1].starts_with("WARNING: File ignored: lstat gone.txt:"),
        "{lines:?}"
    );
}

#[test]
fn archiving_git_directory_warns_once() {
    let f = Fixture::new().with(&[".git/config", ".git/HEAD", "a.txt"]);
    let s = f.select(&Spec::paths(["."]));
    let mut out = Vec::new();
    let report = write_zip(&s, &mut out, CompressionLevel::Default).unwrap();
    let lines: Vec<String> = report.messages.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "WARNING: Part of .git directory is on the list of files to archive",
            "WARNING: This may introduce unexpected problems",
        ]
    );
}

#[test]
fn zip_file_is_written_atomically_in_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new().with(&["a.txt"]);
    let s = f.select(&Spec::paths(["a.txt"]));
    let dest = f.outside().join("cache/group/proj/key/cache.zip");
    write_zip_file(&s, &dest, CompressionLevel::Default).unwrap();
    let dir = dest.parent().unwrap();
    assert_eq!(
        fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["cache.zip"]);
    // Overwriting keeps a single complete file.
    write_zip_file(&s, &dest, CompressionLevel::Fastest).unwrap();
    assert!(zip::ZipArchive::new(fs::File::open(&dest).unwrap()).is_ok());
}
