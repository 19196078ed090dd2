//! `--output` and `--query`, as the AWS CLI has them: one implementation that every
//! verb of every service prints through.
//!
//! A verb hands [`OutputArgs::emit`] its operation's name and its AWS-shaped JSON
//! (the same serde types the socket and the HTTP endpoint use). Then, as the AWS CLI:
//! - `--query` is a JMESPath expression (the `jmespath` crate, the reference Rust
//!   implementation; it passes the JMESPath compliance suite), evaluated over the whole
//!   result, after paginated lists are merged;
//! - `--output json` (the default) prints it indented by four spaces, as Python's
//!   `json.dump(indent=4, ensure_ascii=False)`; an empty object prints nothing;
//! - `--output text` is awscli's `text.py`: tab-separated scalars, one line per object,
//!   nested lists under their upper-cased member name ([`text`]);
//! - `--output table` is awscli's `table.py`: boxed sections titled with the operation
//!   name, scaled to the terminal (80 columns when not a terminal), turned vertical when
//!   too wide, coloured on a terminal unless `--color off` ([`table`]);
//! - `--output yaml` is AWS CLI v2's: ruamel.yaml's safe dumper, block style ([`yaml`]);
//!
//! Members are printed in the order the JSON value holds them (by name: atrest's
//! serde_json keeps maps sorted); text and table sort them anyway, as awscli does.

mod scalar;
pub mod table;
pub mod text;
pub mod yaml;

use std::io::Write;

use serde_json::Value;

/// AWS CLI's exit code for a bad parameter (AWS CLI v2).
const EXIT_PARAM: i32 = super::exit::PARAM;
/// AWS CLI's exit code when the output cannot be written or evaluated.
const EXIT_OUTPUT: i32 = super::exit::OTHER;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
    Table,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Color {
    On,
    Off,
    #[default]
    Auto,
}

/// The output options every verb takes (anywhere on the command line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format: json (default), text, table or yaml.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// A JMESPath expression applied to the result, e.g. `Keys[*].KeyId`,
    /// `Reservations[*].Instances[*].StateReason`, `Keys[?KeyId=='x']`.
    #[arg(long, global = true, value_name = "JMESPATH")]
    pub query: Option<String>,
    /// Colour in table output: on, off, or auto (on when stdout is a terminal).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub color: Color,
}

/// Why a result could not be printed as asked.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("Bad value for --query {expression}: Invalid jmespath expression: {source}")]
    Compile {
        expression: String,
        #[source]
        source: Box<jmespath::JmespathError>,
    },
    #[error("Bad value for --query {expression}: more than {limit} operators")]
    TooComplex { expression: String, limit: usize },
    #[error("--query {expression}: {source}")]
    Evaluate {
        expression: String,
        #[source]
        source: Box<jmespath::JmespathError>,
    },
    #[error("--query {expression}: the result is not JSON: {source}")]
    Convert {
        expression: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the result as JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl OutputArgs {
    /// The format asked for, JSON when none was.
    pub fn format(&self) -> OutputFormat {
        self.output.unwrap_or(OutputFormat::Json)
    }

    /// Checks `--query` before anything is sent, as the AWS CLI does while parsing
    /// its arguments: prints the error and returns the exit code if it does not compile.
    pub fn check(&self) -> Result<(), i32> {
        match &self.query {
            Some(q) => compile(q).map(drop).map_err(|e| {
                eprintln!("\n{e}");
                EXIT_PARAM
            }),
            None => Ok(()),
        }
    }

    /// Prints `value`, the result of `operation`, as asked; returns the exit code.
    /// If the reader has gone away (`atrest ... | head -1`) it exits quietly with 0.
    pub fn emit(&self, operation: &str, value: &Value) -> i32 {
        let text = match self.render(operation, value, &Terminal::stdout(self.color)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("\n{e}");
                return if matches!(e, OutputError::Compile { .. }) {
                    EXIT_PARAM
                } else {
                    EXIT_OUTPUT
                };
            }
        };
        match write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
            Ok(()) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(e) => {
                eprintln!("atrest: cannot write output: {e}");
                EXIT_OUTPUT
            }
        }
    }

    /// The text [`emit`](Self::emit) prints, for a terminal described by `term`.
    pub fn render(
        &self,
        operation: &str,
        value: &Value,
        term: &Terminal,
    ) -> Result<String, OutputError> {
        let queried;
        let value = match &self.query {
            Some(q) => {
                queried = search(q, value)?;
                &queried
            }
            None => value,
        };
        Ok(match self.format() {
            OutputFormat::Json => json(value)?,
            OutputFormat::Text => text::render(value),
            OutputFormat::Table => table::render(operation, value, term),
            OutputFormat::Yaml => yaml::render(value),
        })
    }
}

/// What the table layout needs to know about where it is printed.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    /// Columns; the table turns vertical when wider.
    pub width: usize,
    /// Colour row values and borders as awscli's `ColorizedStyler`.
    pub color: bool,
}

impl Terminal {
    /// Standard output: its width if it is a terminal, else 80 columns, as awscli.
    pub fn stdout(color: Color) -> Terminal {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills the winsize we pass; fd 1 is only inspected.
        let width = if unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0 {
            usize::from(ws.ws_col)
        } else {
            80
        };
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(1) } == 1;
        Terminal {
            width,
            color: match color {
                Color::On => true,
                Color::Off => false,
                Color::Auto => tty,
            },
        }
    }

    /// 80 columns, no colour: what a pipe gets.
    pub fn plain() -> Terminal {
        Terminal {
            width: 80,
            color: false,
        }
    }
}

/// The most operators (`.`, `|`, `[`, `(`, `{`, `!`, `&`, comparisons) an expression may
/// have outside its literals: the jmespath crate parses and evaluates by recursion, so a
/// longer chain (`a.a.a...` a few hundred long) overflows the stack instead of answering.
/// Found by the `jmespath` fuzz target; 128 keeps within a 2 MiB thread stack unoptimized.
pub const MAX_OPERATORS: usize = 128;

/// Counts the operators of `expression` outside its quoted identifiers, raw strings and
/// JSON literals.
fn operators(expression: &str) -> usize {
    let mut count = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expression.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None if ".|[({!&<>=".contains(c) => count += 1,
            None => {}
        }
    }
    count
}

fn compile(expression: &str) -> Result<jmespath::Expression<'static>, OutputError> {
    if operators(expression) > MAX_OPERATORS {
        return Err(OutputError::TooComplex {
            expression: expression.to_string(),
            limit: MAX_OPERATORS,
        });
    }
    jmespath::compile(expression).map_err(|source| OutputError::Compile {
        expression: expression.to_string(),
        source: Box::new(source),
    })
}

/// Evaluates the JMESPath `expression` over `value`.
pub fn search(expression: &str, value: &Value) -> Result<Value, OutputError> {
    let found = compile(expression)?
        .search(value)
        .map_err(|source| OutputError::Evaluate {
            expression: expression.to_string(),
            source: Box::new(source),
        })?;
    serde_json::to_value(&*found).map_err(|source| OutputError::Convert {
        expression: expression.to_string(),
        source,
    })
}

/// The AWS CLI's JSON: four-space indent, non-ASCII as is, a newline at the end; an
/// empty object prints nothing (operations without an answer).
pub fn json(value: &Value) -> Result<String, OutputError> {
    if value.as_object().is_some_and(serde_json::Map::is_empty) {
        return Ok(String::new());
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    serde::Serialize::serialize(value, &mut ser).map_err(OutputError::Json)?;
    out.push(b'\n');
    String::from_utf8(out)
        .map_err(|e| OutputError::Json(serde::ser::Error::custom(format!("not UTF-8: {e}"))))
}

/// Writes `bytes` and flushes.
fn write_all(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::fd::FromRawFd;

    #[test]
    fn long_operator_chains_are_refused_instead_of_overflowing_the_stack() {
        // Found by the jmespath fuzz smoke: `sort_by(Keys, &KeyIdby(...` ~200 deep, and
        // `a.a.a...` 256 long, overflowed a 2 MiB stack and aborted the process.
        let doc = json!({"a": {"a": 1}});
        for unit in ["a.", "(", "!", "&", "[0]", "length("] {
            let e = unit.repeat(5000) + "a";
            let err = search(&e, &doc).expect_err("too complex");
            assert!(
                matches!(
                    err,
                    OutputError::TooComplex {
                        limit: MAX_OPERATORS,
                        ..
                    }
                ),
                "{err}"
            );
        }
        // At the limit it answers (on a 2 MiB thread, as the tests run), and operators
        // inside literals do not count.
        let e = "a.".repeat(MAX_OPERATORS) + "a";
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || search(&e, &doc).map(|_| ()))
            .expect("thread")
            .join()
            .expect("no overflow")
            .expect("answers");
        let literal = format!("'{}'", ".".repeat(1000));
        assert_eq!(
            search(&literal, &json!({})).unwrap(),
            json!(".".repeat(1000))
        );
    }

    fn args(output: OutputFormat, query: Option<&str>) -> OutputArgs {
        OutputArgs {
            output: Some(output),
            query: query.map(str::to_string),
            color: Color::Off,
        }
    }

    #[test]
    fn jmespath_projections_filters_and_multiselects() {
        let v =
            json!({"Keys": [{"KeyId": "a", "KeyArn": "arn:a"}, {"KeyId": "b", "KeyArn": "arn:b"}]});
        assert_eq!(search("Keys[*].KeyId", &v).unwrap(), json!(["a", "b"]));
        assert_eq!(search("Keys[].KeyId", &v).unwrap(), json!(["a", "b"]));
        assert_eq!(
            search("Keys[?KeyId=='b'].KeyArn | [0]", &v).unwrap(),
            json!("arn:b")
        );
        assert_eq!(
            search("Keys[].[KeyId, KeyArn]", &v).unwrap(),
            json!([["a", "arn:a"], ["b", "arn:b"]])
        );
        assert_eq!(
            search("Keys[0].{Id: KeyId}", &v).unwrap(),
            json!({"Id": "a"})
        );
        assert_eq!(search("length(Keys)", &v).unwrap(), json!(2));
        assert_eq!(search("Nope", &v).unwrap(), Value::Null);
    }

    #[test]
    fn a_bad_query_is_refused_with_the_aws_message() {
        let e = compile("Keys[").unwrap_err().to_string();
        assert!(
            e.starts_with("Bad value for --query Keys[: Invalid jmespath expression: "),
            "{e}"
        );
        assert_eq!(args(OutputFormat::Json, Some("Keys[")).check(), Err(252));
        assert_eq!(args(OutputFormat::Json, Some("Keys[*]")).check(), Ok(()));
    }

    #[test]
    fn json_is_indented_by_four_and_empty_objects_print_nothing() {
        let v = json!({"A": [1, {"B": "é"}], "C": {}});
        assert_eq!(
            json(&v).unwrap(),
            "{\n    \"A\": [\n        1,\n        {\n            \"B\": \"é\"\n        }\n    ],\n    \"C\": {}\n}\n"
        );
        assert_eq!(json(&json!({})).unwrap(), "");
        assert_eq!(json(&Value::Null).unwrap(), "null\n");
        let r = args(OutputFormat::Json, Some("Missing"))
            .render("Op", &v, &Terminal::plain())
            .unwrap();
        assert_eq!(r, "null\n");
    }

    #[test]
    fn output_to_a_closed_pipe_is_a_broken_pipe_error_not_a_panic() {
        let mut fds = [0i32; 2];
        // SAFETY: pipe(2) fills two fds we then own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the fds are fresh and owned by nothing else.
        let (rd, mut wr) = unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        drop(rd);
        let e = write_all(&mut wr, b"{}\n").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
