//! The CI/CD expression language, as a table: each operator, precedence and parentheses, patterns and
//! their flags, `null`, undefined and empty variables, Ruby's truthiness, and syntax errors.

use glrunner_pipeline::expression::Expression;
use std::collections::HashMap;

fn variables() -> HashMap<String, String> {
    [
        ("BRANCH", "main"),
        ("DEFAULT", "main"),
        ("FEATURE", "feature/Login-42"),
        ("TAG", "v1.2.3"),
        ("EMPTY", ""),
        ("SPACES", "  "),
        ("YES", "yes"),
        ("PATTERN", "/^feature\\//"),
        ("PATTERN_I", "/^FEATURE/i"),
        ("PLAIN", "Login-42 is here"),
        ("MULTI", "first line\nsecond line"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

const TABLE: &[(&str, bool)] = &[
    // Presence.
    ("$BRANCH", true),
    ("$UNDEFINED", false),
    ("$EMPTY", false),
    ("$SPACES", false),
    ("${BRANCH}", true),
    // == and != with strings, variables and null.
    ("$BRANCH == \"main\"", true),
    ("$BRANCH == 'main'", true),
    ("$BRANCH == \"Main\"", false),
    ("$BRANCH == $DEFAULT", true),
    ("$BRANCH != $DEFAULT", false),
    ("$BRANCH != \"develop\"", true),
    ("\"main\" == $BRANCH", true),
    ("$UNDEFINED == null", true),
    ("$EMPTY == null", false),
    ("$EMPTY == \"\"", true),
    ("$UNDEFINED == \"\"", false),
    ("$BRANCH != null", true),
    ("null == null", true),
    ("$UNDEFINED != null", false),
    // =~ and !~ with patterns.
    ("$FEATURE =~ /^feature\\//", true),
    ("$FEATURE =~ /^feature/", true),
    ("$BRANCH =~ /^feature/", false),
    ("$BRANCH !~ /^feature/", true),
    ("$FEATURE !~ /^feature/", false),
    ("$TAG =~ /^v\\d+\\.\\d+\\.\\d+$/", true),
    ("$FEATURE =~ /login/", false),
    ("$FEATURE =~ /login/i", true),
    ("$MULTI =~ /^second/", false),
    ("$MULTI =~ /^second/m", true),
    ("$MULTI =~ /line.second/", false),
    ("$MULTI =~ /line.second/s", true),
    ("$UNDEFINED =~ /.*/", true),
    ("$UNDEFINED =~ /.+/", false),
    // A pattern held in a variable, and a plain string on the right (substring of it).
    ("$FEATURE =~ $PATTERN", true),
    ("$BRANCH =~ $PATTERN", false),
    ("$FEATURE =~ $PATTERN_I", true),
    ("$BRANCH !~ $PATTERN", true),
    ("\"Login-42\" =~ $PLAIN", true),
    ("$UNDEFINED =~ $UNDEFINED", false),
    ("$UNDEFINED !~ $UNDEFINED", true),
    // && and ||, with Ruby's values: "" is truthy inside, not present at the end.
    ("$BRANCH && $TAG", true),
    ("$BRANCH && $UNDEFINED", false),
    ("$UNDEFINED || $TAG", true),
    ("$EMPTY && $YES", true),
    ("$EMPTY || $YES", false),
    ("$YES || $EMPTY", true),
    // Precedence: comparisons, then &&, then ||; left to right.
    ("$BRANCH == \"main\" || $TAG == \"x\" && $UNDEFINED", true),
    (
        "($BRANCH == \"main\" || $TAG == \"x\") && $UNDEFINED",
        false,
    ),
    ("$UNDEFINED && $BRANCH || $TAG", true),
    ("$UNDEFINED && ($BRANCH || $TAG)", false),
    ("(($BRANCH == \"main\"))", true),
    (
        "$BRANCH == \"main\" && $FEATURE =~ /^feature/ && $TAG != null",
        true,
    ),
    (
        "$BRANCH == \"x\" || $BRANCH == \"y\" || $BRANCH == \"main\"",
        true,
    ),
];

#[test]
fn evaluation_table() {
    let vars = variables();
    let mut wrong = Vec::new();
    for (text, expected) in TABLE {
        let expression =
            Expression::parse(text).unwrap_or_else(|e| panic!("`{text}` should parse: {e}"));
        if expression.evaluate(&vars) != *expected {
            wrong.push(format!("`{text}` should be {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn syntax_errors_name_the_character() {
    let cases: &[(&str, usize, &str)] = &[
        ("$A = \"x\"", 4, "cannot read"),
        ("$A == ", 7, "ends where a value was expected"),
        ("== $A", 1, "needs a value on its left"),
        ("$A $B", 4, "unexpected the variable `$B`"),
        ("($A == \"x\"", 1, "never closed"),
        ("$A == \"x\")", 10, "without a matching `(`"),
        ("$A =~ /a/", 7, "at least two characters"),
        ("$A =~ /(x/", 7, "not a valid regular expression"),
        ("$A =~ /(?=x)y/", 7, "not a valid regular expression"),
        ("$A == \"unclosed", 7, "never closed"),
        ("", 1, "empty"),
    ];
    for (text, column, needle) in cases {
        let err = Expression::parse(text).unwrap_err();
        assert_eq!(err.column, *column, "`{text}`: {err}");
        assert!(err.to_string().contains(needle), "`{text}`: {err}");
    }
}
