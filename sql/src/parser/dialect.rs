//! [`KsqlDialect`]: sqlparser's view of ksqlDB's lexical rules.

use datafusion::sql::sqlparser::ast::Expr;
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// Backticks and double quotes delimit case-sensitive identifiers; `=>`
/// lambdas and `:=` named arguments (`STRUCT(A := 1)`) are allowed.
#[derive(Debug, Default)]
pub struct KsqlDialect;

impl Dialect for KsqlDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_' || ch == '@' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '@' || ch == '$'
    }

    /// ksqlDB names may start with digits (`AS 1R`).
    fn supports_numeric_prefix(&self) -> bool {
        true
    }

    fn supports_lambda_functions(&self) -> bool {
        true
    }

    fn supports_named_fn_args_with_assignment_operator(&self) -> bool {
        true
    }

    fn supports_string_literal_backslash_escape(&self) -> bool {
        false
    }

    fn supports_in_empty_list(&self) -> bool {
        true
    }

    /// `CAST` targets are ksqlDB types (`MAP<STRING, INT>`), which the
    /// generic type grammar does not know.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let is_cast = matches!(&parser.peek_token().token, Token::Word(w) if w.keyword == Keyword::CAST)
            && parser.peek_nth_token(1).token == Token::LParen;
        is_cast.then(|| super::types::parse_cast(parser))
    }
}
