//! Artifacts kept on this machine (`--file`): the upload writes the archive where it is told, without
//! GitLab or a token, and the download extracts a local archive into the project.

use clap::Parser;
use glrunner_helper::{Exit, HelperArgs, Output};
use std::path::Path;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    helper: HelperArgs,
}

fn args(list: &[&str]) -> HelperArgs {
    Cli::try_parse_from(std::iter::once("helper").chain(list.iter().copied()))
        .expect("the command line parses")
        .helper
}

async fn run(list: &[&str]) -> (Exit, String) {
    let mut buf: Vec<u8> = Vec::new();
    let exit = {
        let mut out = Output::new(&mut buf);
        glrunner_helper::run(args(list), &mut out).await
    };
    (exit, String::from_utf8_lossy(&buf).into_owned())
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(path, content).expect("write");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[tokio::test]
async fn an_archive_saved_to_a_file_extracts_into_another_project() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write(&a, "dist/app.js", "console.log(1)\n");
    write(&a, "dist/app.js.map", "{}\n");
    write(&a, "notes.txt", "not selected\n");
    std::fs::create_dir_all(&b).unwrap();
    let archive = tmp.path().join("store/7/archive/build.zip");

    let (exit, out) = run(&[
        "artifacts-upload",
        "--file",
        s(&archive),
        "--project-dir",
        s(&a),
        "--path",
        "dist/",
        "--exclude",
        "dist/*.map",
    ])
    .await;
    assert_eq!(exit, Exit::Success, "{out}");
    assert!(out.contains("Saving artifacts as \"archive\""), "{out}");
    assert!(archive.is_file(), "the archive is where --file says");
    let leftovers: Vec<_> = std::fs::read_dir(archive.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no staging file left beside it: {leftovers:?}"
    );

    let (exit, out) = run(&[
        "artifacts-download",
        "--file",
        s(&archive),
        "--project-dir",
        s(&b),
    ])
    .await;
    assert_eq!(exit, Exit::Success, "{out}");
    assert_eq!(
        std::fs::read_to_string(b.join("dist/app.js")).unwrap(),
        "console.log(1)\n"
    );
    assert!(!b.join("dist/app.js.map").exists(), "excluded");
    assert!(!b.join("notes.txt").exists(), "not selected");
}

#[tokio::test]
async fn nothing_selected_writes_no_file_and_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("store/1/archive/a.zip");
    let (exit, out) = run(&[
        "artifacts-upload",
        "--file",
        s(&archive),
        "--project-dir",
        s(tmp.path()),
        "--path",
        "missing/",
    ])
    .await;
    assert_eq!(exit, Exit::Success, "{out}");
    assert!(!archive.exists());
}

#[tokio::test]
async fn a_missing_or_foreign_local_archive_fails_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("gone.zip");
    let (exit, out) = run(&[
        "artifacts-download",
        "--file",
        s(&missing),
        "--project-dir",
        s(tmp.path()),
    ])
    .await;
    assert_eq!(exit, Exit::Failure);
    assert!(out.contains("ERROR: the artifacts archive"), "{out}");
    assert!(out.contains("Fix: run the pipeline again"), "{out}");

    let text = tmp.path().join("text.zip");
    std::fs::write(&text, "hello").unwrap();
    let (exit, out) = run(&[
        "artifacts-download",
        "--file",
        s(&text),
        "--project-dir",
        s(tmp.path()),
    ])
    .await;
    assert_eq!(exit, Exit::Failure);
    assert!(
        out.contains("are not a zip archive (they start with 68656c6c)"),
        "{out}"
    );
}

#[test]
fn file_replaces_url_and_id_and_excludes_them() {
    let parse = |list: &[&str]| {
        Cli::try_parse_from(std::iter::once("helper").chain(list.iter().copied())).map(|_| ())
    };
    assert!(parse(&["artifacts-upload", "--file", "a.zip"]).is_ok());
    assert!(parse(&["artifacts-download", "--file", "a.zip"]).is_ok());
    assert!(
        parse(&["artifacts-upload"]).is_err(),
        "a destination is required"
    );
    assert!(parse(&["artifacts-download", "--url", "http://gitlab", "--id", "3"]).is_ok());
    assert!(
        parse(&[
            "artifacts-upload",
            "--file",
            "a.zip",
            "--url",
            "http://gitlab"
        ])
        .is_err(),
        "one destination, not two"
    );
}

#[tokio::test]
async fn one_call_extracts_every_dependency_in_order_and_stops_at_the_first_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let mut archives = Vec::new();
    for (id, content) in [(3, "first\n"), (5, "second\n")] {
        let src = tmp.path().join(format!("job-{id}"));
        write(&src, "out/shared.txt", content);
        write(&src, &format!("out/{id}.txt"), content);
        let archive = tmp.path().join(format!("store/{id}/archive/artifacts.zip"));
        let (exit, out) = run(&[
            "artifacts-upload",
            "--file",
            s(&archive),
            "--project-dir",
            s(&src),
            "--path",
            "out/",
        ])
        .await;
        assert_eq!(exit, Exit::Success, "{out}");
        archives.push(archive);
    }
    let (exit, out) = run(&[
        "artifacts-download",
        "--file",
        s(&archives[0]),
        "--dependency",
        "3",
        "build one",
        "--file",
        s(&archives[1]),
        "--dependency",
        "5",
        "-odd-name",
        "--project-dir",
        s(&project),
    ])
    .await;
    assert_eq!(exit, Exit::Success, "{out}");
    let first = out
        .find("Downloading artifacts for build one (3)...")
        .expect(&out);
    let first_extract = out
        .find(&format!("Extracting artifacts from {}", s(&archives[0])))
        .expect(&out);
    let second = out
        .find("Downloading artifacts for -odd-name (5)...")
        .expect(&out);
    let second_extract = out
        .find(&format!("Extracting artifacts from {}", s(&archives[1])))
        .expect(&out);
    assert!(
        first < first_extract && first_extract < second && second < second_extract,
        "{out}"
    );
    assert!(project.join("out/3.txt").is_file() && project.join("out/5.txt").is_file());
    assert_eq!(
        std::fs::read_to_string(project.join("out/shared.txt")).unwrap(),
        "second\n",
        "later archives are extracted over earlier ones, as with one call each"
    );

    // A missing archive stops the run there: the one after it is not extracted.
    let later = tmp.path().join("later");
    std::fs::create_dir_all(&later).unwrap();
    let (exit, out) = run(&[
        "artifacts-download",
        "--file",
        s(&tmp.path().join("gone.zip")),
        "--file",
        s(&archives[1]),
        "--project-dir",
        s(&later),
    ])
    .await;
    assert_eq!(exit, Exit::Failure, "{out}");
    assert!(out.contains("ERROR: the artifacts archive"), "{out}");
    assert!(!later.join("out/5.txt").exists(), "{out}");

    // Labels must pair with archives.
    let (exit, out) = run(&[
        "artifacts-download",
        "--file",
        s(&archives[0]),
        "--file",
        s(&archives[1]),
        "--dependency",
        "3",
        "build one",
        "--project-dir",
        s(&later),
    ])
    .await;
    assert_eq!(exit, Exit::Failure, "{out}");
    assert!(out.contains("1 --dependency but 2 --file given"), "{out}");
    assert!(
        !later.join("out/3.txt").exists(),
        "nothing extracted: {out}"
    );
}
