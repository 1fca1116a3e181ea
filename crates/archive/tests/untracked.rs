//! `untracked: true` against real git repositories.

mod common;

use common::{Fixture, lines, names, run_ok, warnings};
use glrunner_archive::Spec;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    run_ok(
        Command::new("git")
            .args([
                "-c",
                "user.name=glrunner",
                "-c",
                "user.email=glrunner@example.invalid",
            ])
            .args(args)
            .current_dir(dir),
    );
}

fn repo() -> Fixture {
    let f = Fixture::new().with(&["tracked.txt", ".gitignore"]);
    std::fs::write(f.path(".gitignore"), "build/\n").unwrap();
    git(&f.project, &["init", "-q"]);
    git(&f.project, &["add", "tracked.txt", ".gitignore"]);
    git(&f.project, &["commit", "-q", "-m", "init"]);
    f
}

fn untracked(exclude: &[&str]) -> Spec {
    Spec {
        paths: vec![],
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
        untracked: true,
    }
}

#[test]
fn untracked_and_ignored_files_are_added() {
    let f = repo();
    for name in ["new.txt", "dir/nested/x.txt", "build/out.o", "empty/"] {
        common::write(&f.project, name);
    }
    let s = f.select(&untracked(&[]));
    // git lists files, not directories; ignored files count as untracked (no --exclude-standard).
    assert_eq!(names(&s), ["build/out.o", "dir/nested/x.txt", "new.txt"]);
    assert_eq!(lines(&s), ["untracked: found 3 files"]);
}

#[test]
fn untracked_respects_exclude_and_combines_with_paths() {
    let f = repo();
    for name in ["new.txt", "build/out.o", "build/keep.txt"] {
        common::write(&f.project, name);
    }
    let mut spec = untracked(&["build/*.o"]);
    spec.paths = vec!["tracked.txt".into()];
    let s = f.select(&spec);
    assert_eq!(names(&s), ["build/keep.txt", "new.txt", "tracked.txt"]);
    assert_eq!(
        lines(&s),
        [
            "tracked.txt: found 1 matching artifact files and directories",
            "untracked: found 2 files",
            "build/*.o: excluded 1 files",
        ]
    );
}

#[test]
fn unicode_names_come_through_unquoted() {
    let f = repo();
    common::write(&f.project, "неотслеживаемый файл.txt");
    let s = f.select(&untracked(&[]));
    assert_eq!(names(&s), ["неотслеживаемый файл.txt"]);
}

#[test]
fn nothing_untracked_is_a_warning() {
    let f = repo();
    let s = f.select(&untracked(&[]));
    assert!(s.is_empty());
    assert_eq!(warnings(&s), ["WARNING: untracked: no files"]);
}

#[test]
fn outside_a_repository_git_fails_with_a_warning() {
    let f = Fixture::new().with(&["a.txt"]);
    // Keep git from finding a repository above the temp dir.
    std::fs::create_dir(f.path(".git")).unwrap();
    std::fs::write(f.path(".git/HEAD"), "garbage").unwrap();
    let s = f.select(&untracked(&[]));
    assert!(s.is_empty());
    let w = warnings(&s);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("WARNING: untracked: exit status 128"),
        "{w:?}"
    );
}
