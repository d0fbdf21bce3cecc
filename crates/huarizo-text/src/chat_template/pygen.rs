//! jinja2's lazy filters: `map`, `select`, `reject`, `selectattr`, `rejectattr` and
//! `unique` return Python generators, not lists.
//!
//! That shows in templates: a generator is always true (`{% if msgs|selectattr(…) %}`
//! holds even when nothing matched), has no `len()`, and `tojson` rejects it
//! ("Object of type generator is not JSON serializable") until `|list` turns it into a
//! list. minijinja's versions return lists, so these wrappers hand their result back as
//! a [`Generator`] object with those properties.

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, ValueOrKwargs};
use minijinja::{filters, Environment, Error, State, Value};

/// The items of a Python generator, already computed (templates are pure, so evaluating
/// eagerly is unobservable). Iterable, always true, without a length.
#[derive(Debug)]
pub(super) struct Generator(Vec<Value>);

impl Object for Generator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Iter(Box::new(self.0.clone().into_iter()))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        None
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result
    where
        Self: Sized + 'static,
    {
        f.write_str("<generator object>")
    }
}

fn generator(items: Result<Vec<Value>, Error>) -> Result<Value, Error> {
    items.map(|v| Value::from_object(Generator(v)))
}

fn map(state: &mut State, value: Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    generator(filters::map(state, value, args))
}

fn select(
    state: &mut State,
    value: Value,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    generator(filters::select(state, value, test, args))
}

fn reject(
    state: &mut State,
    value: Value,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    generator(filters::reject(state, value, test, args))
}

fn selectattr(
    state: &mut State,
    value: Value,
    attr: Cow<'_, str>,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    generator(filters::selectattr(state, value, attr, test, args))
}

fn rejectattr(
    state: &mut State,
    value: Value,
    attr: Cow<'_, str>,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    generator(filters::rejectattr(state, value, attr, test, args))
}

fn unique(state: &State, value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let items = filters::unique(state, value, kwargs)?;
    generator(items.try_iter().map(Iterator::collect))
}

/// Replaces minijinja's list-returning filters with generator-returning ones.
pub(super) fn register(env: &mut Environment<'_>) {
    env.add_filter("map", map);
    env.add_filter("select", select);
    env.add_filter("reject", reject);
    env.add_filter("selectattr", selectattr);
    env.add_filter("rejectattr", rejectattr);
    env.add_filter("unique", unique);
}
