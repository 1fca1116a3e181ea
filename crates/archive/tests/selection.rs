//! Path selection against real directory trees: gitlab-runner's glob, walk, exclude and warning
//! semantics.

mod common;

use common::{Fixture, lines, names, warnings};
use glrunner_archive::{EntryKind, SelectError, Spec, select};
use std::fs;
use std::os::unix::fs::symlink;

const TREE: &[&str] = &[
    "file.txt",
    "foo/file.txt",
    "foo/file.txt.md",
    "foo/bar/file.txt",
    "foo/bar/file.bin",
    "foo/bar/baz/file.txt",
    "foo/bar/baz/file.extra.dots.txt",
    "foo/bar/baz2/file.txt",
    "bar/foo/test.txt",
];

#[test]
fn doublestar_finds_files_at_every_depth() {
    let f = Fixture::new().with(TREE);
    let s = f.select_paths(&["foo/**/*.txt"], &[]);
    assert_eq!(
        names(&s),
        [
            "foo/bar/baz/file.extra.dots.txt",
            "foo/bar/baz/file.txt",
            "foo/bar/baz2/file.txt",
            "foo/bar/file.txt",
            "foo/file.txt",
        ]
    );
    assert_eq!(
        lines(&s),
        ["foo/**/*.txt: found 5 matching artifact files and directories"]
    );
}

#[test]
fn leading_doublestar_matches_the_top_level_too() {
    let f = Fixture::new().with(&["a.log", "x/y/b.log", "x/c.txt"]);
    let s = f.select_paths(&["**/*.log"], &[]);
    assert_eq!(names(&s), ["a.log", "x/y/b.log"]);
}

#[test]
fn single_star_does_not_cross_directories() {
    let f = Fixture::new().with(TREE);
    assert_eq!(names(&f.select_paths(&["*.txt"], &[])), ["file.txt"]);
    assert_eq!(
        names(&f.select_paths(&["foo/*.txt"], &[])),
        ["foo/file.txt"]
    );
    // `foo//*.txt` is cleaned to `foo/*.txt`.
    assert_eq!(
        names(&f.select_paths(&["foo//*.txt"], &[])),
        ["foo/file.txt"]
    );
}

#[test]
fn a_directory_brings_everything_below_it_with_or_without_slash() {
    let f = Fixture::new().with(&["dir/a.txt", "dir/sub/b.txt", "dir/empty/", "other.txt"]);
    let want = ["dir", "dir/a.txt", "dir/empty", "dir/sub", "dir/sub/b.txt"];
    for path in ["dir", "dir/", "./dir", "dir/."] {
        let s = f.select_paths(&[path], &[]);
        assert_eq!(names(&s), want, "path {path:?}");
        assert_eq!(
            lines(&s),
            [format!(
                "{path}: found 5 matching artifact files and directories"
            )]
        );
    }
    let s = f.select_paths(&["dir"], &[]);
    assert_eq!(s.entries()["dir/empty"].kind, EntryKind::Directory);
    assert_eq!(s.entries()["dir/a.txt"].kind, EntryKind::File);
}

#[test]
fn trailing_doublestar_includes_the_directory_itself() {
    let f = Fixture::new().with(TREE);
    let s = f.select_paths(&["foo/**"], &[]);
    let n = names(&s);
    assert!(n.contains(&"foo"), "{n:?}");
    assert!(n.contains(&"foo/bar/baz2"));
    assert!(n.contains(&"foo/bar/file.bin"));
    assert!(!n.contains(&"file.txt"));
    // foo, 3 directories below it and 7 files.
    assert_eq!(n.len(), 11);
}

#[test]
fn found_counts_every_walk_like_gitlab_runner() {
    // gitlab-runner walks each glob match, so with `**` a file is counted once per matched
    // ancestor: ".", a.txt, d, d/b.txt give 1 + 1 + 2 + (1 + 1 + 1 + 1 + ... ) = 8.
    let f = Fixture::new().with(&["a.txt", "d/b.txt"]);
    let s = f.select_paths(&["**"], &[]);
    assert_eq!(names(&s), ["a.txt", "d", "d/b.txt"]);
    assert_eq!(
        lines(&s),
        ["**: found 8 matching artifact files and directories"]
    );
}

#[test]
fn exclude_wins_over_paths_and_is_counted() {
    let f = Fixture::new().with(&[
        "foo/file.txt",
        "foo/xfile.txt",
        "foo/bar/file.txt",
        "foo/bar/xfile.txt",
        "foo/bar/baz/xfile.txt",
    ]);
    let s = f.select_paths(&["foo/**/*.txt"], &["foo/**/xfile.txt"]);
    assert_eq!(names(&s), ["foo/bar/file.txt", "foo/file.txt"]);
    assert_eq!(
        lines(&s),
        [
            "foo/**/*.txt: found 2 matching artifact files and directories",
            "foo/**/xfile.txt: excluded 3 files",
        ]
    );
}

#[test]
fn exclude_is_not_recursive_unless_it_says_so() {
    let f = Fixture::new().with(&[
        "foo/test/bar/baz/1.txt",
        "foo/test/bar/baz/1.md",
        "foo/test/bar/baz/2.txt",
        "foo/test/bar/baz/2.md",
        "foo/test/bar/baz/3.txt",
    ]);
    let s = f.select_paths(&["foo/test/"], &["foo/test/bar/baz/3.txt", "foo/**/*.md"]);
    assert_eq!(
        names(&s),
        [
            "foo/test",
            "foo/test/bar",
            "foo/test/bar/baz",
            "foo/test/bar/baz/1.txt",
            "foo/test/bar/baz/2.txt",
        ]
    );
    assert!(lines(&s).contains(&"foo/**/*.md: excluded 2 files".to_owned()));

    // Excluding a directory drops that entry only; `dir/**` drops it and its contents.
    let s = f.select_paths(&["foo"], &["foo/test/bar"]);
    assert!(!names(&s).contains(&"foo/test/bar"));
    assert!(names(&s).contains(&"foo/test/bar/baz/1.txt"));
    let s = f.select_paths(&["foo"], &["foo/test/bar/**"]);
    assert_eq!(names(&s), ["foo", "foo/test"]);
}

#[test]
fn everything_excluded_is_a_no_match_warning() {
    let f = Fixture::new().with(&["a.txt", "d/b.txt"]);
    let s = f.select_paths(&["**"], &["**"]);
    assert!(s.is_empty());
    assert_eq!(
        warnings(&s),
        [format!(
            "WARNING: **: no matching files. Ensure that the artifact path is relative to the working directory ({})",
            f.project.display()
        )]
    );
}

#[test]
fn missing_and_empty_paths_warn_without_failing() {
    let f = Fixture::new().with(&["a.txt"]);
    let s = f.select_paths(&["", "nope.txt", "missing/**", "a.txt"], &[]);
    assert_eq!(names(&s), ["a.txt"]);
    let root = f.project.display();
    assert_eq!(
        lines(&s),
        [
            "WARNING: No matching files. Path is empty.".to_owned(),
            format!(
                "WARNING: nope.txt: no matching files. Ensure that the artifact path is relative to the working directory ({root})"
            ),
            format!(
                "WARNING: missing/**: no matching files. Ensure that the artifact path is relative to the working directory ({root})"
            ),
            "a.txt: found 1 matching artifact files and directories".to_owned(),
        ]
    );
}

#[test]
fn paths_outside_the_project_are_refused() {
    let f = Fixture::new().with(&["a.txt"]);
    fs::write(f.outside().join("outside.txt"), "secret").unwrap();
    let s = f.select_paths(
        &[
            "../outside.txt",
            "/etc/passwd",
            "/**/absolute.txt",
            "../*.txt",
            "..",
        ],
        &[],
    );
    assert!(s.is_empty());
    let w = warnings(&s);
    assert_eq!(w.len(), 5, "{w:?}");
    for (line, path) in w.iter().zip([
        "../outside.txt",
        "/etc/passwd",
        "/**/absolute.txt",
        "../*.txt",
        "..",
    ]) {
        assert_eq!(
            line,
            &format!(
                "WARNING: processPath: artifact path is not a subpath of project directory: {path}"
            )
        );
    }
}

#[test]
fn absolute_paths_inside_the_project_work() {
    let f = Fixture::new().with(&[
        "file.thing",
        "file2.thing",
        "foo/bar/file.bin",
        "foo/bar/baz/file.bin",
    ]);
    let root = f.project.display().to_string();
    let s = f.select_paths(
        &[&format!("{root}/*.thing"), &format!("{root}/foo/bar/*.bin")],
        &[&format!("{root}/*2.thing")],
    );
    assert_eq!(names(&s), ["file.thing", "foo/bar/file.bin"]);
    // The project directory itself (with or without slash) selects everything.
    let s = f.select_paths(&[&format!("{root}/")], &[]);
    assert_eq!(s.len(), 7);
}

#[test]
fn relative_path_that_leaves_and_returns() {
    let f = Fixture::new().with(&["foo/file.txt", "foo/file2.txt"]);
    let s = f.select_paths(&["../project/foo/*.txt"], &["../project/foo/*2.txt"]);
    assert_eq!(names(&s), ["foo/file.txt"]);
}

#[test]
fn excludes_outside_the_project_warn_and_do_not_disable_the_others() {
    let f = Fixture::new().with(&["a.txt", "b.log"]);
    let s = f.select_paths(&["*"], &["../*.*", "*.log"]);
    assert_eq!(names(&s), ["a.txt"]);
    assert!(
        warnings(&s).contains(
            &"WARNING: isExcluded: artifact path is not a subpath of project directory: ../*.*"
                .to_owned()
        )
    );
}

#[test]
fn dot_files_match_star_and_alternatives_work() {
    let f = Fixture::new().with(&[".env", "a.txt", "b.txt", "c.txt", "some", "something"]);
    assert_eq!(names(&f.select_paths(&["*"], &[]))[0], ".env");
    assert_eq!(
        names(&f.select_paths(&["{a,b}.txt"], &[])),
        ["a.txt", "b.txt"]
    );
    assert_eq!(names(&f.select_paths(&["[!ab].txt"], &[])), ["c.txt"]);
    assert_eq!(
        names(&f.select_paths(&["some{thing,}"], &[])),
        ["some", "something"]
    );
    assert_eq!(
        names(&f.select_paths(&["?.txt"], &[])),
        ["a.txt", "b.txt", "c.txt"]
    );
}

#[test]
fn bad_patterns_warn() {
    let f = Fixture::new().with(&["a.txt"]);
    let s = f.select_paths(&["[a.txt"], &[]);
    assert!(s.is_empty());
    let w = warnings(&s);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("WARNING: [a.txt: syntax error in pattern"),
        "{w:?}"
    );
}

#[test]
fn symlinks_are_kept_as_symlinks_and_never_descended() {
    let f = Fixture::new().with(&["real/file.txt", "real/sub/deep.txt"]);
    symlink("real", f.path("linkdir")).unwrap();
    symlink("real/file.txt", f.path("linkfile")).unwrap();
    symlink("missing", f.path("dangling")).unwrap();

    let s = f.select_paths(&["**"], &[]);
    let n = names(&s);
    assert!(
        n.contains(&"linkdir") && n.contains(&"linkfile") && n.contains(&"dangling"),
        "{n:?}"
    );
    assert!(!n.iter().any(|p| p.starts_with("linkdir/")), "{n:?}");
    for link in ["linkdir", "linkfile", "dangling"] {
        assert_eq!(s.entries()[link].kind, EntryKind::Symlink, "{link}");
    }

    // A literal path naming the link selects the link, not its contents.
    assert_eq!(names(&f.select_paths(&["linkdir"], &[])), ["linkdir"]);
    // A literal leading directory is followed, as gitlab-runner does, when it stays inside.
    assert_eq!(
        names(&f.select_paths(&["linkdir/*.txt"], &[])),
        ["linkdir/file.txt"]
    );
}

#[test]
fn symlinks_to_outside_never_leak_their_contents() {
    let f = Fixture::new().with(&["a.txt"]);
    let outside = f.outside().join("secrets");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("token"), "glrt-secret").unwrap();
    symlink(&outside, f.path("out")).unwrap();
    symlink(outside.join("token"), f.path("token-link")).unwrap();

    // Matched as entries: kept as symlinks.
    let s = f.select_paths(&["*"], &[]);
    assert_eq!(names(&s), ["a.txt", "out", "token-link"]);
    assert_eq!(s.entries()["out"].kind, EntryKind::Symlink);
    assert_eq!(s.entries()["token-link"].kind, EntryKind::Symlink);

    // Globbing through the link would read outside the project: refused.
    for path in ["out/*", "out/**", "out/token"] {
        let s = f.select_paths(&[path], &[]);
        assert!(s.is_empty(), "{path}: {:?}", names(&s));
        let w = warnings(&s);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(&format!(
                "WARNING: processPath: artifact path is not a subpath of project directory: {path} (it leads through a symbolic link to"
            )),
            "{w:?}"
        );
    }
}

#[test]
fn changed_since_compares_with_the_archive_mtime() {
    let f = Fixture::new().with(&["a.txt", "cache.zip"]);
    common::set_mtime(&f.path("a.txt"), 1_600_000_000);
    common::set_mtime(&f.path("cache.zip"), 1_600_000_100);
    let s = f.select_paths(&["a.txt"], &[]);
    assert!(!s.changed_since(&f.path("cache.zip")));
    common::set_mtime(&f.path("cache.zip"), 1_599_999_000);
    assert!(s.changed_since(&f.path("cache.zip")));
    assert!(s.changed_since(&f.path("missing.zip")));
}

#[test]
fn a_missing_project_directory_is_an_error_with_a_fix() {
    let f = Fixture::new();
    let err = select(&f.path("nope"), &Spec::paths(["*"])).unwrap_err();
    assert!(matches!(err, SelectError::ProjectDir { .. }));
    let text = err.to_string();
    assert!(text.contains("nope") && text.contains("Fix:"), "{text}");
}

#[test]
fn relative_project_dir_is_resolved() {
    let f = Fixture::new().with(&["a.txt"]);
    // A path relative to the test's working directory, climbing to `/` and down again.
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd.components().count() - 1;
    let mut rel = std::path::PathBuf::new();
    for _ in 0..ups {
        rel.push("..");
    }
    rel.push(f.project.strip_prefix("/").unwrap());
    assert!(rel.is_relative());
    let s = select(&rel, &Spec::paths(["a.txt"])).unwrap();
    assert!(s.root().is_absolute());
    assert_eq!(names(&s), ["a.txt"]);
}

#[test]
fn names_that_are_not_utf8_are_skipped_with_a_warning() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::new().with(&["ok.txt", "dir/inner.txt"]);
    fs::write(f.project.join(OsStr::from_bytes(b"bad\xff.txt")), "x").unwrap();
    fs::write(f.project.join("dir").join(OsStr::from_bytes(b"\xfe")), "x").unwrap();
    let s = f.select_paths(&["*"], &[]);
    assert_eq!(names(&s), ["dir", "dir/inner.txt", "ok.txt"]);
    let w = warnings(&s);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter().all(|l| l.starts_with("WARNING: File ignored: ")
            && l.ends_with("the name is not valid UTF-8")),
        "{w:?}"
    );
}
