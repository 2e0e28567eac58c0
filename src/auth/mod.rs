//! Identity building blocks, free of HTTP and SQL: password hashing and its
//! bounded pool, signed access tokens with their key store, and API keys.
//! The request guard, lockout and storage wiring build on these.

pub mod api_keys;
pub mod password_pool;
pub mod passwords;
pub mod signing_keys;
pub mod tokens;

pub use api_keys::{ApiKeyError, KeyHash, NewApiKey};
pub use password_pool::{PasswordCheck, PasswordHasherPool};
pub use passwords::{Argon2Settings, PasswordError};
pub use signing_keys::{KeyStoreError, SigningKeys};
pub use tokens::{AccessTokens, Claims, TokenError, TokenSettings};
pub mod directory;
pub mod guard;
pub mod lockout;
pub mod rate_limit;

pub use guard::{Access, Guard, Principal};
