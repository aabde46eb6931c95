//! [`KsqlDialect`]: sqlparser's view of ksqlDB's lexical rules.

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, LambdaFunction, LambdaFunctionParameter, LambdaSyntax, OneOrManyWithParens,
};
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

    /// `x IN ()` is a syntax error in ksqlDB.
    fn supports_in_empty_list(&self) -> bool {
        false
    }

    /// `=>` starts a lambda (`x => x + 1`), not a named argument.
    fn supports_named_fn_args_with_rarrow_operator(&self) -> bool {
        false
    }

    /// `CAST` targets are ksqlDB types (`MAP<STRING, INT>`), which the
    /// generic type grammar does not know; lambdas (`x => ...`,
    /// `(a, b) => ...`) are ksqlDB's own syntax.
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let is_cast = matches!(&parser.peek_token().token, Token::Word(w) if w.keyword == Keyword::CAST)
            && parser.peek_nth_token(1).token == Token::LParen;
        if is_cast {
            return Some(super::types::parse_cast(parser));
        }
        // `s->*`: every field of struct column `s` (a select item).
        if matches!(parser.peek_token().token, Token::Word(_))
            && parser.peek_nth_token(1).token == Token::Arrow
            && parser.peek_nth_token(2).token == Token::Mul
        {
            return Some(parser.parse_identifier().map(|name| {
                parser.next_token();
                parser.next_token();
                Expr::CompoundFieldAccess {
                    root: Box::new(Expr::Identifier(name)),
                    access_chain: vec![AccessExpr::Dot(Expr::Wildcard(AttachedToken::empty()))],
                }
            }));
        }
        lambda_param_count(parser).map(|n| parse_lambda(parser, n))
    }
}

/// How many parameters the lambda starting at the next token has, if one
/// starts there.
fn lambda_param_count(parser: &Parser) -> Option<usize> {
    let is_word = |n: usize| matches!(parser.peek_nth_token(n).token, Token::Word(_));
    if is_word(0) && parser.peek_nth_token(1).token == Token::RArrow {
        return Some(1);
    }
    if parser.peek_token().token != Token::LParen {
        return None;
    }
    let mut n = 1;
    let mut params = 0;
    loop {
        if !is_word(n) {
            return None;
        }
        params += 1;
        match parser.peek_nth_token(n + 1).token {
            Token::Comma => n += 2,
            Token::RParen if parser.peek_nth_token(n + 2).token == Token::RArrow => {
                return Some(params);
            }
            _ => return None,
        }
    }
}

fn parse_lambda(parser: &mut Parser, params: usize) -> Result<Expr, ParserError> {
    let parenthesised = parser.consume_token(&Token::LParen);
    let mut names = Vec::with_capacity(params);
    for i in 0..params {
        if i > 0 {
            parser.expect_token(&Token::Comma)?;
        }
        names.push(LambdaFunctionParameter {
            name: parser.parse_identifier()?,
            data_type: None,
        });
    }
    if parenthesised {
        parser.expect_token(&Token::RParen)?;
    }
    parser.expect_token(&Token::RArrow)?;
    let body = parser.parse_expr()?;
    let params = match names.len() {
        1 if !parenthesised => OneOrManyWithParens::One(names.remove(0)),
        _ => OneOrManyWithParens::Many(names),
    };
    // `LambdaKeyword` marks ksqlDB's `=>` lambdas apart from `a->b`,
    // which sqlparser also reads as a lambda but is field access.
    Ok(Expr::Lambda(LambdaFunction {
        params,
        body: Box::new(body),
        syntax: LambdaSyntax::LambdaKeyword,
    }))
}
