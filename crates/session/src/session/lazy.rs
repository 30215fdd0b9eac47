//! Parts of a session that exist only while they are used (issue 10: an idle
//! established session holds no buffers).
//!
//! A [`Lazy`] is a pointer: empty until first written, then boxed. A session
//! never frees one on its own (a standalone session keeps its buffers, as it
//! did before); a driver that holds many sessions calls
//! [`Session::trim`](super::Session::trim) when one goes quiet, which moves
//! its empty parts into a [`Spares`](super::Spares) pool, and
//! [`Session::supply`](super::Session::supply) before working on it, so that a
//! busy endpoint recycles a few boxes instead of allocating per frame.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// An optional boxed `T`, created on first use.
#[derive(Debug, Default, Clone)]
pub(crate) struct Lazy<T>(Option<Box<T>>);

impl<T: Default> Lazy<T> {
    pub(crate) const fn empty() -> Self {
        Self(None)
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.0.as_deref()
    }

    /// The part, created (boxed) if absent.
    pub(crate) fn make(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }

    /// The part, if present, for in-place changes that never need one.
    pub(crate) fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }

    pub(crate) fn is_present(&self) -> bool {
        self.0.is_some()
    }

    /// Moves the part out if `idle` says it holds nothing.
    pub(crate) fn take_if(&mut self, idle: impl FnOnce(&T) -> bool) -> Option<Box<T>> {
        if self.0.as_deref().is_some_and(idle) {
            self.0.take()
        } else {
            None
        }
    }

    /// Installs `b` if absent; gives it back otherwise.
    pub(crate) fn fill(&mut self, b: Box<T>) -> Option<Box<T>> {
        if self.0.is_some() {
            Some(b)
        } else {
            self.0 = Some(b);
            None
        }
    }
}

/// A bounded stack of spare boxes of one kind.
#[derive(Debug)]
pub(crate) struct Stack<T> {
    items: Vec<Box<T>>,
}

impl<T> Stack<T> {
    pub(crate) const fn new() -> Self {
        Self { items: Vec::new() }
    }

    pub(crate) fn push(&mut self, b: Box<T>, max: usize) {
        if self.items.len() < max {
            self.items.push(b);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Box<T>> {
        self.items.pop()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}
