//! The CI/CD variable expression language of `rules:if`, `workflow:rules:if` and `only/except:variables`,
//! read and evaluated as GitLab does (`Gitlab::Ci::Pipeline::Expression`):
//!
//! - Operands: `$VAR` (glrunner also reads `${VAR}`), `"string"` / `'string'` (no escapes; the first
//!   matching quote ends it), `null`, and `/pattern/flags` with flags `i`, `m`, `s`, `U`. Patterns use
//!   RE2 syntax, which the `regex` crate shares (no look-around, no back-references).
//! - Operators, tightest first: `==` `!=` `=~` `!~`, then `&&`, then `||`; all left-associative;
//!   parentheses group.
//! - Values follow Ruby: an undefined variable is `nil`; `&&` and `||` return one of their operands
//!   (`"" && x` is `x`, because an empty string is truthy in Ruby), and the whole expression is true
//!   when its value is "present": not `nil`, not `false`, not an empty or whitespace-only string. So
//!   `$EMPTY || $OTHER` is false when `EMPTY` is defined but empty, as in GitLab.
//! - `=~` with `nil` or `false` on the right is false. A variable on the right is used as a pattern when
//!   its value reads `/…/flags`; any other string matches when it *contains* the left value (Ruby's
//!   `String#scan`, which GitLab ends up calling).
//! - At most 100 tokens. Anything else is a syntax error, reported with its column.

use regex::Regex;
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

/// GitLab's lexer gives up after this many tokens.
pub const MAX_TOKENS: usize = 100;

/// A parsed expression, ready to evaluate against variables.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    root: Ast,
}

/// Why an expression cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {column} of `{expression}`)")]
pub struct ExpressionError {
    pub expression: String,
    /// 1-based character position in the expression.
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
enum Ast {
    Variable(String),
    String(String),
    Null,
    Pattern(Pattern),
    Binary(Op, Box<Ast>, Box<Ast>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    Matches,
    NotMatches,
    And,
    Or,
}

impl Op {
    /// Ruby's precedence ranks as GitLab assigns them: lower binds tighter.
    fn precedence(self) -> u8 {
        match self {
            Op::Equals | Op::NotEquals | Op::Matches | Op::NotMatches => 10,
            Op::And => 11,
            Op::Or => 12,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Equals => "==",
            Op::NotEquals => "!=",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
            Op::And => "&&",
            Op::Or => "||",
        })
    }
}

/// A compiled `/pattern/flags`.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Read `/pattern/flags` (Ruby syntax) into an RE2-style regex; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        static RUBY_SYNTAX: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^/(?<regexp>.*)/(?<flags>[ismU]*)$").expect("valid"));
        let caps = RUBY_SYNTAX.captures(text)?;
        let flags = &caps["flags"];
        let body = &caps["regexp"];
        let full = if flags.is_empty() {
            body.to_owned()
        } else {
            format!("(?{flags}){body}")
        };
        Regex::new(&full).ok().map(|regex| Self {
            source: text.to_owned(),
            regex,
        })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

/// An evaluated operand, with Ruby's notion of truth.
#[derive(Debug, Clone)]
enum Val {
    Nil,
    Bool(bool),
    Str(String),
    Pattern(Pattern),
}

impl Val {
    fn truthy(&self) -> bool {
        !matches!(self, Val::Nil | Val::Bool(false))
    }

    /// ActiveSupport's `present?`.
    fn present(&self) -> bool {
        match self {
            Val::Nil | Val::Bool(false) => false,
            Val::Str(s) => !s.trim().is_empty(),
            Val::Bool(true) | Val::Pattern(_) => true,
        }
    }

    /// Ruby's `to_s` as the left side of a match sees it.
    fn text(&self) -> String {
        match self {
            Val::Nil => String::new(),
            Val::Bool(b) => b.to_string(),
            Val::Str(s) => s.clone(),
            Val::Pattern(p) => p.source.clone(),
        }
    }

    fn equals(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Nil, Val::Nil) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Pattern(a), Val::Pattern(b)) => a.source == b.source,
            _ => false,
        }
    }
}

/// Where an expression looks up variable values.
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Expression {
    /// Read `text`; errors name the character where reading failed.
    pub fn parse(text: &str) -> Result<Self, ExpressionError> {
        let tokens = lex(text)?;
        if tokens.is_empty() {
            return Err(ExpressionError {
                expression: text.to_owned(),
                column: 1,
                message: "the expression is empty".into(),
            });
        }
        let mut parser = Parser {
            text,
            tokens: &tokens,
            pos: 0,
        };
        let root = parser.expression(0)?;
        if let Some(extra) = tokens.get(parser.pos) {
            return Err(parser.error_at(
                extra.column,
                match extra.kind {
                    Kind::Close => "a `)` without a matching `(`".to_owned(),
                    _ => format!(
                        "unexpected {} here; join conditions with `&&` or `||`",
                        extra.describe()
                    ),
                },
            ));
        }
        Ok(Self {
            source: text.to_owned(),
            root,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression holds for these variables (GitLab's `truthful?`).
    pub fn evaluate(&self, variables: &dyn Lookup) -> bool {
        evaluate(&self.root, variables).present()
    }
}

fn evaluate(ast: &Ast, vars: &dyn Lookup) -> Val {
    match ast {
        Ast::Variable(name) => vars
            .lookup(name)
            .map_or(Val::Nil, |v| Val::Str(v.to_owned())),
        Ast::String(s) => Val::Str(s.clone()),
        Ast::Null => Val::Nil,
        Ast::Pattern(p) => Val::Pattern(p.clone()),
        Ast::Binary(op, left, right) => match op {
            Op::And => {
                let l = evaluate(left, vars);
                if l.truthy() { evaluate(right, vars) } else { l }
            }
            Op::Or => {
                let l = evaluate(left, vars);
                if l.truthy() { l } else { evaluate(right, vars) }
            }
            Op::Equals => Val::Bool(evaluate(left, vars).equals(&evaluate(right, vars))),
            Op::NotEquals => Val::Bool(!evaluate(left, vars).equals(&evaluate(right, vars))),
            Op::Matches | Op::NotMatches => {
                let text = evaluate(left, vars);
                let pattern = evaluate(right, vars);
                // `nil`/`false` on the right: `=~` is false and `!~` true, as in GitLab.
                let matched = pattern.truthy() && matches(&text.text(), &pattern);
                Val::Bool(if *op == Op::Matches {
                    matched
                } else {
                    !matched
                })
            }
        },
    }
}

fn matches(text: &str, pattern: &Val) -> bool {
    match pattern {
        Val::Pattern(p) => p.is_match(text),
        Val::Str(s) => match Pattern::parse(&s.replace("\\/", "/")) {
            Some(p) => p.is_match(text),
            // Ruby's `String#scan(text)` on the right-hand string: any occurrence of the left value.
            None => s.contains(text),
        },
        Val::Bool(b) => b.to_string().contains(text),
        Val::Nil => false,
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    column: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Open,
    Close,
    Value(Ast),
    Op(Op),
}

impl Token {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Open => "`(`".into(),
            Kind::Close => "`)`".into(),
            Kind::Op(op) => format!("`{op}`"),
            Kind::Value(Ast::Variable(name)) => format!("the variable `${name}`"),
            Kind::Value(Ast::String(s)) => format!("the string \"{s}\""),
            Kind::Value(Ast::Null) => "`null`".into(),
            Kind::Value(Ast::Pattern(p)) => format!("the pattern `{}`", p.source),
            Kind::Value(Ast::Binary(..)) => "an expression".into(),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Token>, ExpressionError> {
    static VARIABLE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\$(?:([A-Za-z0-9_]+)|\{([A-Za-z0-9_]+)\})").expect("valid"));
    static STRING: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"^(?:"(.*?)"|'(.*?)')"#).expect("valid"));
    // GitLab's pattern lexeme: up to the first unescaped `/` after at least two characters.
    static PATTERN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^/(?:[^/]|\\/)+[^\\]/[ismU]*").expect("valid"));
    let error = |column: usize, message: String| ExpressionError {
        expression: text.to_owned(),
        column,
        message,
    };
    let mut tokens = Vec::new();
    let mut offset = 0;
    loop {
        let rest = &text[offset..];
        let trimmed = rest.trim_start();
        offset += rest.len() - trimmed.len();
        let rest = trimmed;
        if rest.is_empty() {
            return Ok(tokens);
        }
        let column = text[..offset].chars().count() + 1;
        if tokens.len() == MAX_TOKENS {
            return Err(error(
                column,
                format!("more than {MAX_TOKENS} tokens; split the condition into several rules"),
            ));
        }
        let (kind, len) = if rest.starts_with('(') {
            (Kind::Open, 1)
        } else if rest.starts_with(')') {
            (Kind::Close, 1)
        } else if let Some(c) = VARIABLE.captures(rest) {
            let name = c.get(1).or(c.get(2)).map_or("", |m| m.as_str());
            (Kind::Value(Ast::Variable(name.to_owned())), c[0].len())
        } else if let Some(c) = STRING.captures(rest) {
            let value = c.get(1).or(c.get(2)).map_or("", |m| m.as_str());
            (Kind::Value(Ast::String(value.to_owned())), c[0].len())
        } else if let Some(m) = PATTERN.find(rest) {
            let written = m.as_str().replace("\\/", "/");
            let pattern = Pattern::parse(&written).ok_or_else(|| {
                let reason = regex_reason(&written);
                error(
                    column,
                    format!(
                        "`{}` is not a valid regular expression: {reason}",
                        m.as_str()
                    ),
                )
            })?;
            (Kind::Value(Ast::Pattern(pattern)), m.len())
        } else if rest.starts_with("null") {
            (Kind::Value(Ast::Null), 4)
        } else if let Some(op) = [
            ("==", Op::Equals),
            ("=~", Op::Matches),
            ("!=", Op::NotEquals),
            ("!~", Op::NotMatches),
            ("&&", Op::And),
            ("||", Op::Or),
        ]
        .into_iter()
        .find_map(|(text, op)| rest.starts_with(text).then_some(op))
        {
            (Kind::Op(op), 2)
        } else {
            let found: String = rest.chars().take(12).collect();
            let hint = if rest.starts_with('/') {
                " (a pattern is `/…/` with at least two characters, e.g. `/^v\\d/`)"
            } else if rest.starts_with('"') || rest.starts_with('\'') {
                " (the string is never closed)"
            } else {
                ""
            };
            return Err(error(
                column,
                format!(
                    "cannot read `{found}`{hint}; expressions use $VARIABLES, \"strings\", /patterns/, null, \
                     == != =~ !~ && || and parentheses"
                ),
            ));
        };
        tokens.push(Token { kind, column });
        offset += len;
    }
}

fn regex_reason(written: &str) -> String {
    let body = written
        .rsplit_once('/')
        .map_or(written, |(b, _)| b)
        .trim_start_matches('/');
    match Regex::new(body) {
        Err(regex::Error::Syntax(s)) => s.lines().last().unwrap_or("invalid").trim().to_owned(),
        Err(e) => e.to_string(),
        Ok(_) => "invalid flags".to_owned(),
    }
}

/// Precedence climbing over the tokens; gives the trees GitLab's shunting-yard parser builds.
struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    pos: usize,
}

impl Parser<'_> {
    fn error_at(&self, column: usize, message: String) -> ExpressionError {
        ExpressionError {
            expression: self.text.to_owned(),
            column,
            message,
        }
    }

    fn end_column(&self) -> usize {
        self.text.chars().count() + 1
    }

    /// Operators looser than `max_rank` (a precedence rank; 0 = any) are left to the caller.
    fn expression(&mut self, max_rank: u8) -> Result<Ast, ExpressionError> {
        let mut left = self.operand()?;
        while let Some(Token {
            kind: Kind::Op(op), ..
        }) = self.tokens.get(self.pos)
        {
            let op = *op;
            if max_rank != 0 && op.precedence() >= max_rank {
                break;
            }
            self.pos += 1;
            // Left-associative: the right side takes only tighter operators.
            let right = self.expression(op.precedence())?;
            left = Ast::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Ast, ExpressionError> {
        let Some(token) = self.tokens.get(self.pos) else {
            return Err(self.error_at(
                self.end_column(),
                "the expression ends where a value was expected".into(),
            ));
        };
        self.pos += 1;
        match &token.kind {
            Kind::Value(ast) => Ok(ast.clone()),
            Kind::Open => {
                let inner = self.expression(0)?;
                match self.tokens.get(self.pos) {
                    Some(Token {
                        kind: Kind::Close, ..
                    }) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    Some(other) => Err(self.error_at(
                        other.column,
                        format!("expected `)` or an operator, found {}", other.describe()),
                    )),
                    None => Err(self.error_at(token.column, "this `(` is never closed".into())),
                }
            }
            Kind::Op(op) => {
                Err(self.error_at(token.column, format!("`{op}` needs a value on its left")))
            }
            Kind::Close => Err(self.error_at(token.column, "expected a value before `)`".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn eval(expr: &str, pairs: &[(&str, &str)]) -> bool {
        Expression::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .evaluate(&vars(pairs))
    }

    #[test]
    fn shape_of_the_tree_follows_precedence() {
        // `a || b && c` is `a || (b && c)`; `a == b && c` is `(a == b) && c`.
        let e = Expression::parse("$A || $B && $C").unwrap();
        assert!(matches!(e.root, Ast::Binary(Op::Or, _, _)), "{:?}", e.root);
        let e = Expression::parse("$A == 'x' && $C").unwrap();
        assert!(matches!(e.root, Ast::Binary(Op::And, _, _)), "{:?}", e.root);
        let e = Expression::parse("($A || $B) && $C").unwrap();
        assert!(matches!(e.root, Ast::Binary(Op::And, _, _)), "{:?}", e.root);
        let e = Expression::parse("$A && $B && $C").unwrap();
        let Ast::Binary(Op::And, left, _) = e.root else {
            panic!()
        };
        assert!(
            matches!(*left, Ast::Binary(Op::And, _, _)),
            "left-associative"
        );
    }

    #[test]
    fn ruby_values_flow_through_and_or() {
        // `""` is truthy in Ruby, so `&&` goes on to the right side...
        assert!(eval("$EMPTY && $B", &[("EMPTY", ""), ("B", "yes")]));
        // ...and `||` stops at it, so the result is "" and not present.
        assert!(!eval("$EMPTY || $B", &[("EMPTY", ""), ("B", "yes")]));
        assert!(eval("$UNSET || $B", &[("B", "yes")]));
        assert!(!eval("$BLANK", &[("BLANK", "   ")]));
    }

    #[test]
    fn lexing_errors_name_the_column() {
        let e = Expression::parse("$A == \"x\" & $B").unwrap_err();
        assert_eq!(e.column, 11, "{e}");
        let e = Expression::parse("$A =~ /(unclosed/").unwrap_err();
        assert_eq!(e.column, 7, "{e}");
        assert!(e.message.contains("not a valid regular expression"), "{e}");
        let e = Expression::parse(&"$A && ".repeat(60)).unwrap_err();
        assert!(e.message.contains("100 tokens"), "{e}");
    }
}
