//! The values the router gives every request besides its [`Db`](crate::db::Db) — the auth
//! settings, the read router, the route listing, the API document — in one request
//! extension. Each `Extension` layer cost a boxed clone of its value, an insert into the
//! request's extension map (which it made grow past its first sizes) and a drop, per
//! request, for values most requests never read; [`Provided`] is one `Arc` for all of them.

use std::sync::Arc;

use http::Extensions;

/// The router's per-service values — the auth settings, the read router, the route listing,
/// the API document — in one request extension shared by every request: an `Extension`
/// layer per value cost a boxed clone, an insert and a drop per request. Read with
/// [`provided`].
///
/// ```
/// use pgbridge::request::{Provided, provided};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Greeting(&'static str);
///
/// let mut values = http::Extensions::new();
/// values.insert(Greeting("hello"));
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Provided::new(values));
/// assert_eq!(provided::<Greeting>(request.extensions()), Some(&Greeting("hello")));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Provided(Arc<Extensions>);

impl Provided {
    /// The values in `values`.
    ///
    /// ```
    /// let provided = pgbridge::request::Provided::new(http::Extensions::new());
    /// assert!(provided.get::<u8>().is_none());
    /// ```
    pub fn new(values: Extensions) -> Self {
        Self(Arc::new(values))
    }

    /// The value of type `T`, if the router provides one.
    ///
    /// ```
    /// let mut values = http::Extensions::new();
    /// values.insert(7_u8);
    /// assert_eq!(pgbridge::request::Provided::new(values).get::<u8>(), Some(&7));
    /// ```
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get::<T>()
    }
}

/// The value of type `T` a request's `extensions` carry: from the router's [`Provided`], or
/// inserted on its own (a request or environ built by hand).
///
/// ```
/// let mut extensions = http::Extensions::new();
/// extensions.insert(7_u8);
/// assert_eq!(pgbridge::request::provided::<u8>(&extensions), Some(&7));
/// ```
pub fn provided<T: Send + Sync + 'static>(extensions: &Extensions) -> Option<&T> {
    extensions
        .get::<Provided>()
        .and_then(Provided::get::<T>)
        .or_else(|| extensions.get::<T>())
}
