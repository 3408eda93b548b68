//! Operators and sign-in: accounts with roles, argon2id passwords, database-backed sessions,
//! API tokens, login throttling, the first-run setup link, and the audit log.
//!
//! The admin asks an [`Auth`] who is making each request. [`Auth::sessions`] is the built-in
//! login; a host app with its own sign-in passes [`Auth::custom`] with an [`Authenticator`] that
//! maps a request to an operator and role.
pub mod accounts;
pub(crate) mod audit;
pub(crate) mod password;
pub(crate) mod session_store;

use std::sync::Arc;

use axum::http::request::Parts;

pub use crate::admin::extract::Operator;
pub(crate) use accounts::Login;
pub use accounts::{AccountError, Accounts};

/// Maps a request to the operator making it (`None`: nobody is signed in).
///
/// ```
/// use nightshift::Role;
/// use nightshift::auth::{Authenticator, Operator};
///
/// /// Trusts the `X-User` header a host app's own auth proxy sets.
/// struct FromProxy;
///
/// #[async_trait::async_trait]
/// impl Authenticator for FromProxy {
///     async fn authenticate(&self, parts: &axum::http::request::Parts) -> Option<Operator> {
///         let name = parts.headers.get("x-user")?.to_str().ok()?.to_owned();
///         Some(Operator { name, role: Role::Operator })
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Who makes this request, if anyone.
    async fn authenticate(&self, parts: &Parts) -> Option<Operator>;
}

/// How the admin knows who is asking.
#[derive(Clone)]
pub enum Auth {
    /// Built-in: operators in the database, login page, sessions, API tokens, CSRF.
    Sessions(SessionOptions),
    /// The host app's own sign-in.
    Custom(CustomAuth),
}

/// A host app's own sign-in, and whether the admin adds its CSRF token to it.
#[derive(Clone)]
pub struct CustomAuth {
    pub(crate) authenticator: Arc<dyn Authenticator>,
    /// Every state change must echo the admin's CSRF token (a cookie the admin sets, repeated
    /// in the page's `<meta name="csrf-token">`), as with the built-in login. On by default.
    pub(crate) csrf: bool,
}

/// Settings of the built-in login.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Mark the cookie `Secure` (serve over HTTPS, or behind a proxy that does).
    pub secure_cookies: bool,
    /// Log out after this long without a request.
    pub idle_timeout: std::time::Duration,
    /// Log out this long after login, however active.
    pub absolute_timeout: std::time::Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            secure_cookies: false,
            idle_timeout: std::time::Duration::from_secs(8 * 3600),
            absolute_timeout: std::time::Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Auth {
    /// The built-in login with default settings.
    pub fn sessions() -> Auth {
        Auth::Sessions(SessionOptions::default())
    }

    /// A host app's own sign-in. State changes still need the admin's CSRF token (the pages
    /// send it by themselves); see [`Auth::without_csrf`] for hosts that already protect every
    /// request.
    ///
    /// ```
    /// # use nightshift::auth::{Auth, Authenticator, Operator};
    /// # struct FromProxy;
    /// # #[async_trait::async_trait]
    /// # impl Authenticator for FromProxy {
    /// #     async fn authenticate(&self, _: &axum::http::request::Parts) -> Option<Operator> { None }
    /// # }
    /// let auth = Auth::custom(FromProxy);
    /// ```
    pub fn custom(a: impl Authenticator) -> Auth {
        Auth::Custom(CustomAuth {
            authenticator: Arc::new(a),
            csrf: true,
        })
    }

    /// Turns the admin's CSRF check off for [`Auth::custom`] (the host checks every state
    /// change itself, or only scripts with non-cookie credentials call it). No effect on
    /// [`Auth::sessions`], whose CSRF check always stays.
    ///
    /// ```
    /// # use nightshift::auth::{Auth, Authenticator, Operator};
    /// # struct HeaderAuth;
    /// # #[async_trait::async_trait]
    /// # impl Authenticator for HeaderAuth {
    /// #     async fn authenticate(&self, _: &axum::http::request::Parts) -> Option<Operator> { None }
    /// # }
    /// let auth = Auth::custom(HeaderAuth).without_csrf();
    /// ```
    pub fn without_csrf(self) -> Auth {
        match self {
            Auth::Custom(c) => Auth::Custom(CustomAuth { csrf: false, ..c }),
            other => other,
        }
    }
}
