//! Series selectors in PromQL's syntax: `name{label="v",other!~"re"}`.

use std::fmt;

use regex::Regex;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~` (anchored regex)
    Re,
    /// `!~` (anchored regex)
    Nre,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name (`__name__` for the metric name).
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or pattern as written.
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// A matcher; regexes are anchored as PromQL anchors them.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Re | MatchOp::Nre => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Neq => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::Nre => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// A series selector: all matchers must hold.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The matchers, the metric name among them as `__name__`.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Parses `name{a="b", c=~"d"}`, `{__name__="x"}` or a bare name.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let s = s.trim();
        let (name, rest) = match s.find('{') {
            Some(i) => (s[..i].trim(), &s[i..]),
            None => (s, ""),
        };
        let mut matchers = Vec::new();
        if !name.is_empty() {
            if !valid_name(name, true) {
                return Err(format!("invalid metric name {name:?}"));
            }
            matchers.push(Matcher::new("__name__", MatchOp::Eq, name)?);
        }
        if !rest.is_empty() {
            let body = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("unbalanced braces in {s:?}"))?;
            let mut chars = body.chars().peekable();
            loop {
                while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    break;
                }
                let label: String =
                    std::iter::from_fn(|| chars.next_if(|c| c.is_alphanumeric() || *c == '_'))
                        .collect();
                if !valid_name(&label, false) {
                    return Err(format!("invalid label name {label:?} in {s:?}"));
                }
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                let op = match (chars.next(), chars.peek().copied()) {
                    (Some('='), Some('~')) => {
                        chars.next();
                        MatchOp::Re
                    }
                    (Some('='), _) => MatchOp::Eq,
                    (Some('!'), Some('=')) => {
                        chars.next();
                        MatchOp::Neq
                    }
                    (Some('!'), Some('~')) => {
                        chars.next();
                        MatchOp::Nre
                    }
                    _ => return Err(format!("expected =, !=, =~ or !~ after {label:?} in {s:?}")),
                };
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                let quote = chars
                    .next()
                    .filter(|c| *c == '"' || *c == '\'')
                    .ok_or_else(|| format!("expected a quoted value for {label:?} in {s:?}"))?;
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated value for {label:?} in {s:?}")),
                        Some('\\') => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => {
                                return Err(format!("unterminated value for {label:?} in {s:?}"));
                            }
                        },
                        Some(c) if c == quote => break,
                        Some(c) => value.push(c),
                    }
                }
                matchers.push(Matcher::new(&label, op, &value)?);
            }
        }
        if matchers.is_empty() {
            return Err("a selector needs a metric name or at least one matcher".into());
        }
        Ok(Selector { matchers })
    }

    /// Selects exactly the series with these labels.
    pub fn exact(labels: &[(String, String)]) -> Selector {
        Selector {
            matchers: labels
                .iter()
                .map(|(k, v)| Matcher {
                    name: k.clone(),
                    op: MatchOp::Eq,
                    value: v.clone(),
                    regex: None,
                })
                .collect(),
        }
    }

    /// Whether a series with these labels is selected.
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        self.matchers.iter().all(|m| {
            let v = labels
                .iter()
                .find(|(k, _)| *k == m.name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            m.matches(v)
        })
    }

    /// The metric name when the selector fixes one.
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Eq)
            .map(|m| m.value.as_str())
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name().unwrap_or("");
        f.write_str(name)?;
        let rest: Vec<String> = self
            .matchers
            .iter()
            .filter(|m| !(m.name == "__name__" && m.op == MatchOp::Eq))
            .map(|m| {
                let op = match m.op {
                    MatchOp::Eq => "=",
                    MatchOp::Neq => "!=",
                    MatchOp::Re => "=~",
                    MatchOp::Nre => "!~",
                };
                format!("{}{op}{:?}", m.name, m.value)
            })
            .collect();
        if !rest.is_empty() {
            write!(f, "{{{}}}", rest.join(","))?;
        }
        Ok(())
    }
}

fn valid_name(s: &str, metric: bool) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (metric && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches_promql_selectors() {
        let s = Selector::parse(r#"node_cpu_seconds_total{mode="idle", cpu!~"1|2"}"#).unwrap();
        assert!(s.matches(&l(&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("mode", "idle")
        ])));
        assert!(!s.matches(&l(&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "1"),
            ("mode", "idle")
        ])));
        assert!(!s.matches(&l(&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("mode", "user")
        ])));
        assert_eq!(
            s.to_string(),
            r#"node_cpu_seconds_total{mode="idle",cpu!~"1|2"}"#
        );
        let s = Selector::parse(r#"{__name__=~"node_load.*"}"#).unwrap();
        assert!(s.matches(&l(&[("__name__", "node_load1")])));
        assert!(
            Selector::parse("up")
                .unwrap()
                .matches(&l(&[("__name__", "up")]))
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(
            Selector::parse("x{a=}")
                .unwrap_err()
                .contains("quoted value")
        );
        assert!(
            Selector::parse("x{a=\"b}")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            Selector::parse("x{a=~\"(\"}")
                .unwrap_err()
                .contains("regular expression")
        );
        assert!(Selector::parse("9x").unwrap_err().contains("metric name"));
        assert!(Selector::parse("").is_err());
    }
}
