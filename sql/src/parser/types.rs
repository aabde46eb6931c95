//! ksqlDB column types: `INT`, `DECIMAL(4, 2)`, `ARRAY<MAP<STRING, INT>>`,
//! `STRUCT<A INT, B STRING>`.

use datafusion::sql::sqlparser::ast::{CastKind, DataType, Expr, Ident, ObjectName};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_engine::schema::SqlType;

use super::{KsqlDialect, KsqlParser, normalize_ident, split_shift_right, syntax};
use crate::error::Result;

pub(crate) fn parse_type(p: &mut KsqlParser) -> Result<SqlType> {
    parse_type_tokens(&mut p.p).map_err(syntax)
}

/// Parses a type from text, as `CAST` targets are carried through the AST.
pub fn parse_type_str(text: &str) -> Result<SqlType> {
    let dialect = KsqlDialect;
    let tokens = datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| crate::error::SqlError::Syntax {
            line: e.location.line,
            column: e.location.column,
            message: e.message,
        })?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(split_shift_right(tokens));
    parse_type_tokens(&mut parser).map_err(syntax)
}

fn expected<T>(p: &Parser, what: &str) -> Result<T, ParserError> {
    p.expected(what, p.peek_token())
}

/// The type at the parser's position.
pub fn parse_type_tokens(p: &mut Parser) -> Result<SqlType, ParserError> {
    let token = p.peek_token();
    let Token::Word(word) = &token.token else {
        return expected(p, "a type");
    };
    let name = word.value.to_uppercase();
    p.next_token();
    Ok(match name.as_str() {
        "BOOLEAN" => SqlType::Boolean,
        "INT" | "INTEGER" => SqlType::Int,
        "BIGINT" => SqlType::Bigint,
        "DOUBLE" => SqlType::Double,
        "STRING" | "VARCHAR" => SqlType::String,
        "BYTES" => SqlType::Bytes,
        "DATE" => SqlType::Date,
        "TIME" => SqlType::Time,
        "TIMESTAMP" => SqlType::Timestamp,
        "DECIMAL" => {
            p.expect_token(&Token::LParen)?;
            let precision = p.parse_literal_uint()?;
            p.expect_token(&Token::Comma)?;
            let scale = p.parse_literal_uint()?;
            p.expect_token(&Token::RParen)?;
            if precision == 0 || precision > 38 || scale > precision {
                return p.expected(
                    "DECIMAL precision 1..38 and scale <= precision",
                    p.peek_token(),
                );
            }
            SqlType::Decimal {
                precision: precision as u8,
                scale: scale as i8,
            }
        }
        "ARRAY" => {
            p.expect_token(&Token::Lt)?;
            let elem = parse_type_tokens(p)?;
            p.expect_token(&Token::Gt)?;
            SqlType::Array(Box::new(elem))
        }
        "MAP" => {
            p.expect_token(&Token::Lt)?;
            let key = parse_type_tokens(p)?;
            p.expect_token(&Token::Comma)?;
            let value = parse_type_tokens(p)?;
            p.expect_token(&Token::Gt)?;
            SqlType::Map(Box::new(key), Box::new(value))
        }
        "STRUCT" => {
            p.expect_token(&Token::Lt)?;
            let mut fields = Vec::new();
            if p.peek_token().token != Token::Gt {
                loop {
                    let ident = p.parse_identifier()?;
                    fields.push((normalize_ident(&ident), parse_type_tokens(p)?));
                    if !p.consume_token(&Token::Comma) {
                        break;
                    }
                }
            }
            p.expect_token(&Token::Gt)?;
            SqlType::Struct(fields)
        }
        _ => {
            p.prev_token();
            return expected(
                p,
                "a type (BOOLEAN, INT, BIGINT, DOUBLE, DECIMAL, STRING, BYTES, DATE, TIME, TIMESTAMP, ARRAY, MAP, STRUCT)",
            );
        }
    })
}

/// `CAST(expr AS type)` with a ksqlDB type: the type travels as a custom
/// data type holding its canonical text.
pub(crate) fn parse_cast(p: &mut Parser) -> Result<Expr, ParserError> {
    p.next_token(); // CAST
    p.expect_token(&Token::LParen)?;
    let expr = p.parse_expr()?;
    if !p.parse_keyword(datafusion::sql::sqlparser::keywords::Keyword::AS) {
        return p.expected("AS", p.peek_token());
    }
    let sql_type = parse_type_tokens(p)?;
    p.expect_token(&Token::RParen)?;
    Ok(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type: DataType::Custom(
            ObjectName::from(vec![Ident::new(sql_type.to_string())]),
            vec![],
        ),
        array: false,
        format: None,
    })
}
