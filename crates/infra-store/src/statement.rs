//! Statements whose shape depends on the call — list filters, multi-row inserts — built from
//! SQL fragments and typed values, with placeholders written by the database itself.
//!
//! This is sqlx's [`sqlx::QueryBuilder`] with one difference: text and arguments stay apart
//! until the statement runs. A `QueryBuilder` cannot be executed in code generic over the
//! database: `build` borrows the builder for the lifetime of its arguments (sqlx requires
//! `Arguments<'q>: IntoArguments<'q>`, and SQLite's arguments borrow), so the builder is still
//! borrowed when its destructor runs and the borrow checker refuses it (sqlx issues #1978,
//! #4188). Here [`Statement::into_parts`] hands over the text and the arguments separately,
//! for [`sqlx::query_with`] and [`sqlx::query_as_with`].

use sqlx::{Arguments, Database, Encode, Type};

/// SQL text and its arguments, built together.
pub(crate) struct Statement<'q, DB: Database> {
    sql: String,
    arguments: DB::Arguments<'q>,
    /// The first value that could not be encoded; reported by [`Statement::into_parts`].
    failure: Option<sqlx::Error>,
}

impl<'q, DB: Database> Statement<'q, DB> {
    /// A statement starting with `sql`.
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self { sql: sql.into(), arguments: DB::Arguments::default(), failure: None }
    }

    /// Appends SQL text; never client input.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder in the database's syntax (`$n` for PostgreSQL, `?` for SQLite)
    /// bound to `value`.
    pub(crate) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, DB> + Type<DB>,
    {
        if let Err(e) = self.arguments.add(value) {
            self.failure.get_or_insert(sqlx::Error::Encode(e));
        }
        if let Err(e) = self.arguments.format_placeholder(&mut self.sql) {
            self.failure.get_or_insert(sqlx::Error::Protocol(format!("cannot write a placeholder: {e}")));
        }
        self
    }

    /// Appends `(v, v, …), (…)`: one parenthesised tuple per item, `push_tuple` binding its values
    /// through the [`Tuple`] it is given.
    pub(crate) fn push_values<I>(
        &mut self,
        items: I,
        mut push_tuple: impl FnMut(&mut Tuple<'_, 'q, DB>, I::Item),
    ) where
        I: IntoIterator,
    {
        for (i, item) in items.into_iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" });
            push_tuple(&mut Tuple { statement: self, empty: true }, item);
            self.push(")");
        }
    }

    /// The SQL text and its arguments.
    ///
    /// # Errors
    /// The first failure to encode a bound value.
    pub(crate) fn into_parts(self) -> Result<(String, DB::Arguments<'q>), sqlx::Error> {
        match self.failure {
            Some(failure) => Err(failure),
            None => Ok((self.sql, self.arguments)),
        }
    }
}

/// The values of one tuple of [`Statement::push_values`], separated by commas.
pub(crate) struct Tuple<'s, 'q, DB: Database> {
    statement: &'s mut Statement<'q, DB>,
    empty: bool,
}

impl<'q, DB: Database> Tuple<'_, 'q, DB> {
    /// Appends the next value of the tuple.
    pub(crate) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, DB> + Type<DB>,
    {
        if !self.empty {
            self.statement.push(", ");
        }
        self.empty = false;
        self.statement.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Postgres, Sqlite};

    use super::*;

    fn insert<DB: Database>() -> String
    where
        for<'q> i64: Encode<'q, DB> + Type<DB>,
    {
        let mut statement = Statement::<DB>::new("INSERT INTO t (a, b) VALUES ");
        statement.push_values([1_i64, 2], |tuple, n| {
            tuple.push_bind(n).push_bind(n * 10);
        });
        statement.push(" RETURNING a");
        statement.into_parts().unwrap().0
    }

    #[test]
    fn placeholders_are_written_in_each_dialect() {
        assert_eq!(insert::<Postgres>(), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING a");
        assert_eq!(insert::<Sqlite>(), "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) RETURNING a");
    }
}
