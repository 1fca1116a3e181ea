//! The gzip and raw artifact formats, checked with the system's `gzip` where installed and by
//! parsing every gzip member header.

mod common;

use common::{Fixture, have, run_ok, set_mtime};
use flate2::bufread::GzDecoder;
use glrunner_archive::{
    ArtifactFormat, CompressionLevel, Spec, WriteError, write_archive, write_gzip, write_raw,
};
use std::io::Read;
use std::os::unix::fs::symlink;
use std::process::Command;

fn gzip_of(f: &Fixture, paths: &[&str]) -> Vec<u8> {
    let s = f.select(&Spec::paths(paths.iter().copied()));
    let mut out = Vec::new();
    let report = write_gzip(&s, &mut out).unwrap();
    assert_eq!(report.entries, s.len() as u64);
    out
}

/// (name, comment, mtime, contents) of every member.
fn members(mut data: &[u8]) -> Vec<(String, String, u32, Vec<u8>)> {
    let mut found = Vec::new();
    while !data.is_empty() {
        let mut d = GzDecoder::new(data);
        let mut body = Vec::new();
        d.read_to_end(&mut body).unwrap();
        let h = d.header().unwrap();
        found.push((
            String::from_utf8(h.filename().unwrap().to_vec()).unwrap(),
            String::from_utf8(h.comment().unwrap().to_vec()).unwrap(),
            h.mtime(),
            body,
        ));
        data = d.into_inner();
    }
    found
}

#[test]
fn one_member_per_file_readable_by_gzip() {
    let f = Fixture::new().with(&["reports/b.xml", "reports/a.xml", "reports/ü.xml"]);
    set_mtime(&f.path("reports/a.xml"), 1_700_000_000);
    let out = gzip_of(&f, &["reports/*.xml"]);

    let m = members(&out);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].0, "a.xml");
    assert_eq!(m[0].1, "reports/a.xml");
    assert_eq!(m[0].2, 1_700_000_000);
    assert_eq!(m[0].3, b"reports/a.xml");
    assert_eq!(m[1].1, "reports/b.xml");
    assert_eq!(m[2].0, "e:%C3%BC.xml");
    assert_eq!(m[2].1, "e:reports%2F%C3%BC.xml");

    if have("gzip") {
        let path = f.outside().join("junit.xml.gz");
        std::fs::write(&path, &out).unwrap();
        let dc = run_ok(Command::new("gzip").arg("-dc").arg(&path));
        assert_eq!(
            dc.stdout,
            "reports/a.xmlreports/b.xmlreports/ü.xml".as_bytes()
        );
    } else {
        eprintln!("gzip is not installed; skipping the gzip -dc half");
    }
}

#[test]
fn gzip_refuses_directories_with_a_fix() {
    let f = Fixture::new().with(&["reports/a.xml"]);
    let s = f.select(&Spec::paths(["reports"]));
    let err = write_gzip(&s, Vec::new()).unwrap_err();
    assert!(matches!(err, WriteError::NotRegularFile { ref name } if name == "reports"));
    let text = err.to_string();
    assert!(
        text.starts_with("the \"reports\" is not a regular file"),
        "{text}"
    );
    assert!(text.contains("reports/*.xml"), "{text}");
}

#[test]
fn raw_sends_exactly_one_file() {
    let f = Fixture::new().with(&["gl-sast-report.json", "other.json"]);
    let s = f.select(&Spec::paths(["gl-sast-report.json"]));
    let mut out = Vec::new();
    write_archive(&s, ArtifactFormat::Raw, CompressionLevel::Default, &mut out).unwrap();
    assert_eq!(out, b"gl-sast-report.json");

    let s = f.select(&Spec::paths(["*.json"]));
    let err = write_raw(&s, Vec::new()).unwrap_err();
    assert!(
        matches!(err, WriteError::TooManyRawFiles { count: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("only one file can be sent as raw")
    );

    let s = f.select(&Spec::paths(["missing.json"]));
    assert!(matches!(
        write_raw(&s, Vec::new()),
        Err(WriteError::NoRawFile)
    ));
}

#[test]
fn raw_follows_links_only_inside_the_project() {
    let f = Fixture::new().with(&["out/report.json"]);
    symlink("out/report.json", f.path("report.json")).unwrap();
    let s = f.select(&Spec::paths(["report.json"]));
    let mut out = Vec::new();
    write_raw(&s, &mut out).unwrap();
    assert_eq!(out, b"out/report.json");

    let secret = f.outside().join("secret.json");
    std::fs::write(&secret, "secret").unwrap();
    symlink(&secret, f.path("leak.json")).unwrap();
    let s = f.select(&Spec::paths(["leak.json"]));
    let mut out = Vec::new();
    let err = write_raw(&s, &mut out).unwrap_err();
    assert!(matches!(err, WriteError::LinkOutside { .. }), "{err:?}");
    assert!(out.is_empty());
}

#[test]
fn write_archive_dispatches_on_format() {
    let f = Fixture::new().with(&["a.txt"]);
    let s = f.select(&Spec::paths(["a.txt"]));
    let mut zip = Vec::new();
    write_archive(&s, ArtifactFormat::Zip, CompressionLevel::Default, &mut zip).unwrap();
    assert_eq!(&zip[..4], b"PK\x03\x04");
    let mut gz = Vec::new();
    write_archive(&s, ArtifactFormat::Gzip, CompressionLevel::Default, &mut gz).unwrap();
    assert_eq!(&gz[..2], b"\x1f\x8b");
}
