//! Parsing ksqlDB's dialect into [`Statement`]s.
//!
//! sqlparser tokenizes and parses expressions and select items; this module
//! drives the statement structure itself (`CREATE STREAM ... WITH`,
//! `WINDOW TUMBLING (...)` between FROM and WHERE, `EMIT CHANGES`), which no
//! generic SQL grammar has. Unquoted identifiers are upper-cased here, so
//! later layers see ksqlDB's names. Every error carries line and column.

pub mod ast;
pub mod dialect;
pub mod types;

use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{
    Location, Span, Token, TokenWithSpan, Tokenizer, Word,
};

pub use ast::*;
pub use dialect::KsqlDialect;

use crate::error::{Result, SqlError};

/// Parses a script of `;`-separated statements.
pub fn parse_statements(sql: &str) -> Result<Vec<ParsedStatement>> {
    let dialect = KsqlDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax {
            line: e.location.line,
            column: e.location.column,
            message: e.message,
        })?;
    let tokens = split_shift_right(tokens);
    let parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut p = KsqlParser { p: parser, sql };
    let mut out = Vec::new();
    loop {
        while p.p.consume_token(&Token::SemiColon) {}
        if p.p.peek_token().token == Token::EOF {
            break;
        }
        let start = p.p.peek_token().span.start;
        let statement = p.parse_statement()?;
        let end = p.p.peek_token();
        match end.token {
            Token::SemiColon | Token::EOF => {}
            _ => return Err(p.error_at(&end, "expected ';' or end of input")),
        }
        let mut text = p.slice(start, end.span.start).trim_end().to_string();
        if end.token == Token::SemiColon {
            text.push(';');
        }
        out.push(ParsedStatement {
            text,
            statement,
            line: start.line,
            column: start.column,
        });
    }
    Ok(out)
}

/// Parses exactly one statement.
pub fn parse_statement(sql: &str) -> Result<ParsedStatement> {
    let mut statements = parse_statements(sql)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(SqlError::Syntax {
            line: 1,
            column: 1,
            message: "empty statement".into(),
        }),
        n => Err(SqlError::Statement(format!(
            "expected one statement, found {n}"
        ))),
    }
}

/// `ARRAY<ARRAY<INT>>` ends in `>>`, which the tokenizer reads as a shift.
/// ksqlDB has no shift operator, so every `>>` is two `>`.
fn split_shift_right(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        if t.token == Token::ShiftRight {
            let second = Location {
                line: t.span.start.line,
                column: t.span.start.column + 1,
            };
            out.push(TokenWithSpan {
                token: Token::Gt,
                span: Span::new(t.span.start, second),
            });
            out.push(TokenWithSpan {
                token: Token::Gt,
                span: Span::new(second, t.span.end),
            });
        } else {
            out.push(t);
        }
    }
    out
}

/// Upper-cases an unquoted identifier; quoted ones keep their case.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_uppercase()
    }
}

pub(crate) fn syntax(e: ParserError) -> SqlError {
    let text = e.to_string();
    // sqlparser appends " at Line: L, Column: C"; lift it into the fields.
    if let Some(pos) = text.rfind(" at Line: ") {
        let tail = &text[pos + " at Line: ".len()..];
        if let Some((line, col)) = tail.split_once(", Column: ")
            && let (Ok(line), Ok(column)) = (line.trim().parse(), col.trim().parse())
        {
            let message = text[..pos]
                .trim_start_matches("sql parser error: ")
                .to_string();
            return SqlError::Syntax {
                line,
                column,
                message,
            };
        }
    }
    SqlError::Syntax {
        line: 0,
        column: 0,
        message: text,
    }
}

pub(crate) struct KsqlParser<'a> {
    pub(crate) p: Parser<'a>,
    sql: &'a str,
}

/// Words that end a FROM item, so they are never taken as its alias.
const CLAUSE_WORDS: &[&str] = &[
    "WINDOW",
    "WHERE",
    "GROUP",
    "HAVING",
    "PARTITION",
    "EMIT",
    "LIMIT",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "ON",
    "WITHIN",
];

impl<'a> KsqlParser<'a> {
    fn slice(&self, start: Location, end: Location) -> &'a str {
        let from = offset_of(self.sql, start);
        let to = if end.line == 0 {
            self.sql.len()
        } else {
            offset_of(self.sql, end)
        };
        self.sql.get(from..to.max(from)).unwrap_or("")
    }

    pub(crate) fn error_at(&self, token: &TokenWithSpan, message: &str) -> SqlError {
        let found = match &token.token {
            Token::EOF => "end of input".to_string(),
            t => format!("'{t}'"),
        };
        SqlError::Syntax {
            line: token.span.start.line,
            column: token.span.start.column,
            message: format!("{message}, found {found}"),
        }
    }

    fn error(&self, message: &str) -> SqlError {
        self.error_at(&self.p.peek_token(), message)
    }

    /// The upper-cased text of the next token if it is an unquoted word.
    fn peek_word(&self) -> Option<String> {
        peek_word_of(&self.p.peek_token())
    }

    fn peek_nth_word(&self, n: usize) -> Option<String> {
        peek_word_of(&self.p.peek_nth_token(n))
    }

    fn parse_word(&mut self, word: &str) -> bool {
        if self.peek_word().as_deref() == Some(word) {
            self.p.next_token();
            true
        } else {
            false
        }
    }

    fn parse_words(&mut self, words: &[&str]) -> bool {
        for (i, w) in words.iter().enumerate() {
            if self.peek_nth_word(i).as_deref() != Some(*w) {
                return false;
            }
        }
        for _ in words {
            self.p.next_token();
        }
        true
    }

    fn expect_word(&mut self, word: &str) -> Result<()> {
        if self.parse_word(word) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {word}")))
        }
    }

    fn expect_token(&mut self, token: &Token) -> Result<()> {
        if self.p.consume_token(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{token}'")))
        }
    }

    /// An identifier, normalized; returns whether it was quoted.
    fn identifier(&mut self) -> Result<(String, bool)> {
        let token = self.p.peek_token();
        match &token.token {
            Token::Word(w) => {
                self.p.next_token();
                Ok((
                    normalize_ident(&Ident {
                        value: w.value.clone(),
                        quote_style: w.quote_style,
                        span: token.span,
                    }),
                    w.quote_style.is_some(),
                ))
            }
            _ => Err(self.error_at(&token, "expected an identifier")),
        }
    }

    fn name(&mut self) -> Result<String> {
        Ok(self.identifier()?.0)
    }

    fn expr(&mut self) -> Result<Expr> {
        self.p.parse_expr().map_err(syntax)
    }

    fn parse_statement(&mut self) -> Result<Statement> {
        let Some(word) = self.peek_word() else {
            return Err(self.error("expected a statement"));
        };
        match word.as_str() {
            "CREATE" => self.parse_create(),
            "INSERT" => self.parse_insert(),
            "DROP" => self.parse_drop(),
            "SHOW" | "LIST" => self.parse_show(),
            "DESCRIBE" => self.parse_describe(),
            "TERMINATE" => {
                self.p.next_token();
                if self.parse_word("ALL") {
                    Ok(Statement::Terminate { query_id: None })
                } else {
                    let token = self.p.next_token();
                    match token.token {
                        Token::Word(w) => Ok(Statement::Terminate { query_id: Some(w.value) }),
                        _ => Err(self.error_at(&token, "expected a query id")),
                    }
                }
            }
            "EXPLAIN" => {
                self.p.next_token();
                let token = self.p.next_token();
                match token.token {
                    Token::Word(w) => Ok(Statement::Explain { query_id: w.value }),
                    _ => Err(self.error_at(&token, "EXPLAIN takes the id of a running query")),
                }
            }
            "SELECT" => Ok(Statement::Select(self.parse_query()?)),
            "SET" => {
                self.p.next_token();
                let name = self.p.parse_literal_string().map_err(syntax)?;
                self.expect_token(&Token::Eq)?;
                let value = self.p.parse_literal_string().map_err(syntax)?;
                Ok(Statement::SetProperty { name, value })
            }
            "UNSET" => {
                self.p.next_token();
                let name = self.p.parse_literal_string().map_err(syntax)?;
                Ok(Statement::UnsetProperty { name })
            }
            _ => Err(self.error("expected CREATE, INSERT, DROP, SHOW, LIST, DESCRIBE, EXPLAIN, TERMINATE, SELECT, SET or UNSET")),
        }
    }

    fn parse_kind(&mut self) -> Result<SourceKind> {
        if self.parse_word("STREAM") {
            Ok(SourceKind::Stream)
        } else if self.parse_word("TABLE") {
            Ok(SourceKind::Table)
        } else {
            Err(self.error("expected STREAM or TABLE"))
        }
    }

    fn parse_create(&mut self) -> Result<Statement> {
        self.expect_word("CREATE")?;
        let or_replace = self.parse_words(&["OR", "REPLACE"]);
        let read_only = self.parse_word("SOURCE");
        let kind = self.parse_kind()?;
        let if_not_exists = self.parse_words(&["IF", "NOT", "EXISTS"]);
        let name = self.name()?;
        let columns = if self.p.peek_token().token == Token::LParen {
            self.parse_column_definitions()?
        } else {
            vec![]
        };
        let properties = self.parse_with_properties()?;
        if self.parse_word("AS") {
            if !columns.is_empty() {
                return Err(self.error("a CREATE ... AS SELECT takes no column list"));
            }
            let query = self.parse_query()?;
            return Ok(Statement::CreateAsSelect(CreateAsSelect {
                kind,
                name,
                or_replace,
                if_not_exists,
                properties,
                query,
            }));
        }
        Ok(Statement::CreateSource(CreateSource {
            kind,
            name,
            or_replace,
            if_not_exists,
            read_only,
            columns,
            properties,
        }))
    }

    fn parse_column_definitions(&mut self) -> Result<Vec<ColumnDefinition>> {
        self.expect_token(&Token::LParen)?;
        let mut columns = Vec::new();
        loop {
            let name = self.name()?;
            let sql_type = types::parse_type(self)?;
            let constraint = if self.parse_words(&["PRIMARY", "KEY"]) {
                ColumnConstraint::PrimaryKey
            } else if self.parse_word("KEY") {
                ColumnConstraint::Key
            } else if self.parse_word("HEADERS") {
                ColumnConstraint::Headers
            } else if self.parse_word("HEADER") {
                self.expect_token(&Token::LParen)?;
                self.p.parse_literal_string().map_err(syntax)?;
                self.expect_token(&Token::RParen)?;
                ColumnConstraint::Headers
            } else {
                ColumnConstraint::None
            };
            columns.push(ColumnDefinition {
                name,
                sql_type,
                constraint,
            });
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect_token(&Token::RParen)?;
        Ok(columns)
    }

    fn parse_with_properties(&mut self) -> Result<WithProperties> {
        let mut properties = WithProperties::new();
        if !self.parse_word("WITH") {
            return Ok(properties);
        }
        self.expect_token(&Token::LParen)?;
        loop {
            let name = self.name()?.to_uppercase();
            self.expect_token(&Token::Eq)?;
            let token = self.p.next_token();
            let value = match token.token {
                Token::SingleQuotedString(s) => PropertyValue::String(s),
                Token::Number(n, _) => PropertyValue::Number(n),
                Token::Word(w) if w.value.eq_ignore_ascii_case("true") => {
                    PropertyValue::Boolean(true)
                }
                Token::Word(w) if w.value.eq_ignore_ascii_case("false") => {
                    PropertyValue::Boolean(false)
                }
                _ => return Err(self.error_at(&token, "expected a string, number or boolean")),
            };
            properties.insert(name, value);
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect_token(&Token::RParen)?;
        Ok(properties)
    }

    fn parse_insert(&mut self) -> Result<Statement> {
        self.expect_word("INSERT")?;
        self.expect_word("INTO")?;
        let at = self.p.peek_token().span.start;
        let (target, target_quoted) = self.identifier()?;
        if self.p.peek_token().token == Token::LParen
            || self.peek_word().as_deref() == Some("VALUES")
        {
            let columns = if self.p.consume_token(&Token::LParen) {
                let mut names = Vec::new();
                loop {
                    names.push(self.name()?);
                    if !self.p.consume_token(&Token::Comma) {
                        break;
                    }
                }
                self.expect_token(&Token::RParen)?;
                Some(names)
            } else {
                None
            };
            self.expect_word("VALUES")?;
            self.expect_token(&Token::LParen)?;
            let values = self
                .p
                .parse_comma_separated(Parser::parse_expr)
                .map_err(syntax)?;
            self.expect_token(&Token::RParen)?;
            return Ok(Statement::InsertValues {
                target,
                target_quoted,
                columns,
                values,
            });
        }
        let properties = self.parse_with_properties()?;
        let query = self.parse_query()?;
        Ok(Statement::InsertInto {
            target,
            properties,
            query,
            line: at.line,
            column: at.column,
        })
    }

    fn parse_drop(&mut self) -> Result<Statement> {
        self.expect_word("DROP")?;
        let kind = self.parse_kind()?;
        let if_exists = self.parse_words(&["IF", "EXISTS"]);
        let name = self.name()?;
        let delete_topic = self.parse_words(&["DELETE", "TOPIC"]);
        Ok(Statement::Drop {
            kind,
            name,
            if_exists,
            delete_topic,
        })
    }

    fn parse_show(&mut self) -> Result<Statement> {
        self.p.next_token();
        let kind = match self.peek_word().as_deref() {
            Some("STREAMS") => ShowKind::Streams,
            Some("TABLES") => ShowKind::Tables,
            Some("QUERIES") => ShowKind::Queries,
            Some("TOPICS") => ShowKind::Topics,
            Some("FUNCTIONS") => ShowKind::Functions,
            Some("PROPERTIES") => ShowKind::Properties,
            _ => {
                return Err(self
                    .error("expected STREAMS, TABLES, QUERIES, TOPICS, FUNCTIONS or PROPERTIES"));
            }
        };
        self.p.next_token();
        let extended = self.parse_word("EXTENDED");
        Ok(Statement::Show { kind, extended })
    }

    fn parse_describe(&mut self) -> Result<Statement> {
        self.expect_word("DESCRIBE")?;
        if self.parse_word("FUNCTION") {
            return Ok(Statement::DescribeFunction { name: self.name()? });
        }
        if matches!(
            self.peek_word().as_deref(),
            Some("STREAMS") | Some("TABLES")
        ) {
            let kind = if self.parse_word("STREAMS") {
                ShowKind::Streams
            } else {
                self.p.next_token();
                ShowKind::Tables
            };
            let extended = self.parse_word("EXTENDED");
            return Ok(Statement::Show { kind, extended });
        }
        // ksqlDB writes `DESCRIBE EXTENDED name`; the trailing form is
        // accepted too.
        let leading = self.parse_word("EXTENDED");
        let name = self.name()?;
        let extended = leading || self.parse_word("EXTENDED");
        Ok(Statement::Describe { name, extended })
    }

    fn parse_relation(&mut self) -> Result<Relation> {
        let at = self.p.peek_token().span.start;
        let name = self.name()?;
        let alias = if self.parse_word("AS") {
            Some(self.name()?)
        } else {
            match &self.p.peek_token().token {
                Token::Word(w)
                    if w.quote_style.is_some()
                        || !CLAUSE_WORDS.contains(&w.value.to_uppercase().as_str()) =>
                {
                    Some(self.name()?)
                }
                _ => None,
            }
        };
        Ok(Relation {
            name,
            alias,
            line: at.line,
            column: at.column,
        })
    }

    pub(crate) fn parse_query(&mut self) -> Result<Query> {
        self.expect_word("SELECT")?;
        let select: Vec<SelectItem> = self
            .p
            .parse_comma_separated(Parser::parse_select_item)
            .map_err(syntax)?;
        self.expect_word("FROM")?;
        let from = self.parse_relation()?;
        let mut joins = Vec::new();
        loop {
            let kind = if self.parse_word("JOIN") || self.parse_words(&["INNER", "JOIN"]) {
                JoinKind::Inner
            } else if self.parse_words(&["LEFT", "JOIN"])
                || self.parse_words(&["LEFT", "OUTER", "JOIN"])
            {
                JoinKind::Left
            } else if self.parse_words(&["RIGHT", "JOIN"])
                || self.parse_words(&["RIGHT", "OUTER", "JOIN"])
            {
                JoinKind::Right
            } else if self.parse_words(&["FULL", "JOIN"])
                || self.parse_words(&["FULL", "OUTER", "JOIN"])
            {
                JoinKind::Full
            } else {
                break;
            };
            let relation = self.parse_relation()?;
            let within = if self.parse_word("WITHIN") {
                Some(self.parse_within()?)
            } else {
                None
            };
            self.expect_word("ON")?;
            let on = self.expr()?;
            joins.push(Join {
                kind,
                relation,
                within,
                on,
            });
        }
        let window = if self.parse_word("WINDOW") {
            Some(self.parse_window()?)
        } else {
            None
        };
        let where_clause = if self.parse_word("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let group_by = if self.parse_words(&["GROUP", "BY"]) {
            let exprs = self
                .p
                .parse_comma_separated(Parser::parse_expr)
                .map_err(syntax)?;
            // `GROUP BY (a, b)` groups by a and b.
            match <[Expr; 1]>::try_from(exprs) {
                Ok([Expr::Tuple(items)]) => items,
                Ok([single]) => vec![single],
                Err(exprs) => exprs,
            }
        } else {
            vec![]
        };
        let having = if self.parse_word("HAVING") {
            Some(self.expr()?)
        } else {
            None
        };
        let partition_by = if self.parse_words(&["PARTITION", "BY"]) {
            if self.p.peek_token().token == Token::LParen
                && self.p.peek_nth_token(1).token == Token::RParen
            {
                return Err(SqlError::Statement(
                    "PARTITION BY requires at least one expression".into(),
                ));
            }
            let exprs = self
                .p
                .parse_comma_separated(Parser::parse_expr)
                .map_err(syntax)?;
            match <[Expr; 1]>::try_from(exprs) {
                Ok([Expr::Tuple(items)]) => items,
                Ok([single]) => vec![single],
                Err(exprs) => exprs,
            }
        } else {
            vec![]
        };
        let emit = if self.parse_word("EMIT") {
            if self.parse_word("CHANGES") {
                Some(Emit::Changes)
            } else if self.parse_word("FINAL") {
                Some(Emit::Final)
            } else {
                return Err(self.error("expected CHANGES or FINAL"));
            }
        } else {
            None
        };
        let limit = if self.p.parse_keyword(Keyword::LIMIT) {
            Some(self.p.parse_literal_uint().map_err(syntax)?)
        } else {
            None
        };
        Ok(Query {
            select,
            from,
            joins,
            window,
            where_clause,
            group_by,
            having,
            partition_by,
            emit,
            limit,
        })
    }

    /// `n UNIT`, in milliseconds.
    fn parse_duration(&mut self) -> Result<u64> {
        let amount = self.p.parse_literal_uint().map_err(syntax)?;
        let unit = self
            .peek_word()
            .ok_or_else(|| self.error("expected a time unit"))?;
        let factor: u64 = match unit.trim_end_matches('S') {
            "MILLISECOND" => 1,
            "SECOND" => 1_000,
            "MINUTE" => 60_000,
            "HOUR" => 3_600_000,
            "DAY" => 86_400_000,
            _ => {
                return Err(self
                    .error("expected a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)"));
            }
        };
        self.p.next_token();
        amount
            .checked_mul(factor)
            .ok_or_else(|| self.error("duration too large"))
    }

    fn parse_grace(&mut self) -> Result<Option<u64>> {
        if self.parse_words(&["GRACE", "PERIOD"]) {
            Ok(Some(self.parse_duration()?))
        } else {
            Ok(None)
        }
    }

    fn parse_within(&mut self) -> Result<Within> {
        let (before_ms, after_ms) = if self.p.consume_token(&Token::LParen) {
            let before = self.parse_duration()?;
            self.expect_token(&Token::Comma)?;
            let after = self.parse_duration()?;
            self.expect_token(&Token::RParen)?;
            (before, after)
        } else {
            let both = self.parse_duration()?;
            (both, both)
        };
        let grace_ms = self.parse_grace()?;
        Ok(Within {
            before_ms,
            after_ms,
            grace_ms,
        })
    }

    fn parse_window(&mut self) -> Result<WindowSpec> {
        const KINDS: [&str; 3] = ["TUMBLING", "HOPPING", "SESSION"];
        // `WINDOW name SESSION (...)`: a window may be named; the name
        // means nothing to the query.
        let named = self
            .peek_word()
            .is_some_and(|w| !KINDS.contains(&w.as_str()))
            && peek_word_of(&self.p.peek_nth_token(1)).is_some_and(|w| KINDS.contains(&w.as_str()));
        if named {
            self.p.next_token();
        }
        let kind_word = self
            .peek_word()
            .ok_or_else(|| self.error("expected TUMBLING, HOPPING or SESSION"))?;
        self.p.next_token();
        self.expect_token(&Token::LParen)?;
        let kind = match kind_word.as_str() {
            "TUMBLING" => {
                self.expect_word("SIZE")?;
                WindowKind::Tumbling {
                    size_ms: self.parse_duration()?,
                }
            }
            "HOPPING" => {
                self.expect_word("SIZE")?;
                let size_ms = self.parse_duration()?;
                self.expect_token(&Token::Comma)?;
                self.expect_word("ADVANCE")?;
                self.expect_word("BY")?;
                WindowKind::Hopping {
                    size_ms,
                    advance_ms: self.parse_duration()?,
                }
            }
            "SESSION" => WindowKind::Session {
                gap_ms: self.parse_duration()?,
            },
            _ => return Err(self.error("expected TUMBLING, HOPPING or SESSION")),
        };
        let mut spec = WindowSpec {
            kind,
            retention_ms: None,
            grace_ms: None,
        };
        while self.p.consume_token(&Token::Comma) {
            if self.parse_word("RETENTION") {
                spec.retention_ms = Some(self.parse_duration()?);
            } else if let Some(grace) = self.parse_grace()? {
                spec.grace_ms = Some(grace);
            } else {
                return Err(self.error("expected RETENTION or GRACE PERIOD"));
            }
        }
        self.expect_token(&Token::RParen)?;
        Ok(spec)
    }
}

fn peek_word_of(token: &TokenWithSpan) -> Option<String> {
    match &token.token {
        Token::Word(Word {
            value,
            quote_style: None,
            ..
        }) => Some(value.to_uppercase()),
        _ => None,
    }
}

/// Byte offset of a 1-based line/column (columns count characters).
fn offset_of(sql: &str, at: Location) -> usize {
    let mut offset = 0;
    for (i, line) in sql.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == at.line {
            return offset
                + line
                    .char_indices()
                    .nth(at.column.saturating_sub(1) as usize)
                    .map(|(b, _)| b)
                    .unwrap_or(line.len());
        }
        offset += line.len();
    }
    sql.len()
}

#[cfg(test)]
mod tests;
