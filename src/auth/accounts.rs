//! Operators, their API tokens, login throttling and the first-run setup token, in the database.
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

use super::password;
use crate::clock::now_ms;
use crate::entity::{api_token, login_throttle, operator, setup_token};
use crate::role::Role;

/// Failed logins allowed per account and per address within the window.
pub const MAX_FAILURES: i32 = 5;
const WINDOW_MS: i64 = 15 * 60 * 1000;
const LOCK_MS: i64 = 15 * 60 * 1000;
const SETUP_TTL_MS: i64 = 24 * 3600 * 1000;

/// Why an account change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Names are 1–64 letters, digits, `.`, `_`, `-` or `@`.
    #[error("name: use 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    InvalidName,
    /// Passwords have at least 8 characters.
    #[error("password: use at least 8 characters")]
    WeakPassword,
    /// The name is taken.
    #[error("name: an operator named {0:?} already exists")]
    Duplicate(String),
    /// No such operator or token.
    #[error("{0} not found")]
    NotFound(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// How a login attempt ended.
#[derive(Debug)]
pub enum Login {
    Ok(operator::Model),
    /// Wrong name or password (or a disabled operator): one answer for all.
    Invalid,
    /// Too many failures for this account or address: wait.
    Throttled,
}

/// The operator accounts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: DatabaseConnection,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl Accounts {
    pub fn new(db: DatabaseConnection) -> Self {
        Accounts { db }
    }

    /// How many operators exist.
    pub async fn count(&self) -> Result<u64, AccountError> {
        Ok(operator::Entity::find().count(&self.db).await?)
    }

    /// Adds an operator.
    pub async fn add(
        &self,
        name: &str,
        password: &str,
        role: Role,
    ) -> Result<operator::Model, AccountError> {
        if !valid_name(name) {
            return Err(AccountError::InvalidName);
        }
        if password.chars().count() < 8 {
            return Err(AccountError::WeakPassword);
        }
        if self.by_name(name).await?.is_some() {
            return Err(AccountError::Duplicate(name.to_owned()));
        }
        let now = now_ms();
        let hash = password::hash(password);
        let row = operator::ActiveModel {
            id: NotSet,
            name: Set(name.to_owned()),
            password_hash: Set(hash),
            role: Set(role.as_str().to_owned()),
            disabled: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        };
        Ok(operator::Entity::insert(row)
            .exec_with_returning(&self.db)
            .await?)
    }

    pub async fn by_name(&self, name: &str) -> Result<Option<operator::Model>, AccountError> {
        Ok(operator::Entity::find()
            .filter(operator::Column::Name.eq(name))
            .one(&self.db)
            .await?)
    }

    pub async fn by_id(&self, id: i64) -> Result<operator::Model, AccountError> {
        operator::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("operator {id}")))
    }

    pub async fn list(&self) -> Result<Vec<operator::Model>, AccountError> {
        Ok(operator::Entity::find()
            .order_by_asc(operator::Column::Name)
            .all(&self.db)
            .await?)
    }

    async fn set(
        &self,
        id: i64,
        col: operator::Column,
        value: sea_orm::Value,
    ) -> Result<(), AccountError> {
        let res = operator::Entity::update_many()
            .col_expr(col, Expr::value(value))
            .col_expr(operator::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(operator::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(AccountError::NotFound(format!("operator {id}")));
        }
        Ok(())
    }

    pub async fn set_role(&self, id: i64, role: Role) -> Result<(), AccountError> {
        self.set(id, operator::Column::Role, role.as_str().into())
            .await
    }

    pub async fn set_disabled(&self, id: i64, disabled: bool) -> Result<(), AccountError> {
        self.set(id, operator::Column::Disabled, disabled.into())
            .await
    }

    pub async fn set_password(&self, id: i64, password: &str) -> Result<(), AccountError> {
        if password.chars().count() < 8 {
            return Err(AccountError::WeakPassword);
        }
        self.set(
            id,
            operator::Column::PasswordHash,
            password::hash(password).into(),
        )
        .await
    }

    /// Checks a login, throttling per account and per address. Unknown names take as long as
    /// known ones.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        address: &str,
    ) -> Result<Login, AccountError> {
        let now = now_ms();
        let mut keys = vec![format!("user:{name}")];
        // Without a known address (no ConnectInfo), everyone would share one key: lock accounts only.
        if !address.is_empty() && address != "unknown" {
            keys.push(format!("addr:{address}"));
        }
        let op = self.by_name(name).await?;
        let locked = self.locked(&keys, now).await?;
        // Argon2 takes tens of milliseconds of CPU: off the async threads, and the same work
        // whether the name exists, is locked or not.
        let stored = op.as_ref().map(|o| o.password_hash.clone());
        let given = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || match stored {
            Some(h) => password::verify(&given, &h),
            None => {
                password::verify_dummy(&given);
                false
            }
        })
        .await
        .unwrap_or(false);
        if locked {
            return Ok(Login::Throttled);
        }
        let ok = matches && op.as_ref().is_some_and(|o| !o.disabled);
        match op {
            Some(op) if ok => {
                login_throttle::Entity::delete_by_id(keys[0].clone())
                    .exec(&self.db)
                    .await?;
                if password::needs_rehash(&op.password_hash) {
                    self.set(
                        op.id,
                        operator::Column::PasswordHash,
                        password::hash(password).into(),
                    )
                    .await?;
                }
                Ok(Login::Ok(op))
            }
            _ => {
                for key in &keys {
                    self.fail(key, now).await?;
                }
                Ok(Login::Invalid)
            }
        }
    }

    async fn locked(&self, keys: &[String], now: i64) -> Result<bool, AccountError> {
        let rows = login_throttle::Entity::find()
            .filter(login_throttle::Column::Key.is_in(keys.iter().cloned()))
            .all(&self.db)
            .await?;
        Ok(rows.iter().any(|r| r.locked_until.is_some_and(|t| t > now)))
    }

    async fn fail(&self, key: &str, now: i64) -> Result<(), AccountError> {
        let current = login_throttle::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await?;
        let (failures, start) = match current {
            Some(r)
                if now - r.window_start < WINDOW_MS && r.locked_until.is_none_or(|t| t > now) =>
            {
                (r.failures + 1, r.window_start)
            }
            _ => (1, now),
        };
        let locked_until = (failures >= MAX_FAILURES).then_some(now + LOCK_MS);
        let row = login_throttle::ActiveModel {
            key: Set(key.to_owned()),
            failures: Set(failures),
            window_start: Set(start),
            locked_until: Set(locked_until),
        };
        login_throttle::Entity::insert(row)
            .on_conflict(
                OnConflict::column(login_throttle::Column::Key)
                    .update_columns([
                        login_throttle::Column::Failures,
                        login_throttle::Column::WindowStart,
                        login_throttle::Column::LockedUntil,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        if locked_until.is_some() {
            tracing::warn!(%key, "login locked after {failures} failures");
        }
        Ok(())
    }

    /// Creates an API token for `operator`; returns the token, shown this once.
    pub async fn create_token(
        &self,
        operator: &str,
        name: &str,
    ) -> Result<(String, api_token::Model), AccountError> {
        let op = self
            .by_name(operator)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("operator {operator:?}")))?;
        let token = format!("ns_{}", password::random_token());
        let row = api_token::ActiveModel {
            id: NotSet,
            operator_id: Set(op.id),
            name: Set(name.chars().take(100).collect()),
            token_hash: Set(password::token_hash(&token)),
            created_at: Set(now_ms()),
            last_used_at: Set(None),
            revoked_at: Set(None),
        };
        let model = api_token::Entity::insert(row)
            .exec_with_returning(&self.db)
            .await?;
        Ok((token, model))
    }

    /// Tokens, newest first (all, or one operator's).
    pub async fn tokens(
        &self,
        operator_id: Option<i64>,
    ) -> Result<Vec<api_token::Model>, AccountError> {
        let mut q = api_token::Entity::find().order_by_desc(api_token::Column::Id);
        if let Some(id) = operator_id {
            q = q.filter(api_token::Column::OperatorId.eq(id));
        }
        Ok(q.all(&self.db).await?)
    }

    pub async fn revoke_token(&self, id: i64) -> Result<(), AccountError> {
        let res = api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Expr::value(now_ms()))
            .filter(api_token::Column::Id.eq(id))
            .filter(api_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(AccountError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    /// The active operator a bearer token belongs to.
    pub async fn operator_for_token(
        &self,
        token: &str,
    ) -> Result<Option<operator::Model>, AccountError> {
        let Some(t) = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(password::token_hash(token)))
            .filter(api_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let op = self.by_id(t.operator_id).await?;
        if op.disabled {
            return Ok(None);
        }
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now_ms()))
            .filter(api_token::Column::Id.eq(t.id))
            .exec(&self.db)
            .await?;
        Ok(Some(op))
    }

    /// A new one-time setup token (replacing any earlier one), valid for a day.
    pub async fn create_setup_token(&self) -> Result<String, AccountError> {
        setup_token::Entity::delete_many().exec(&self.db).await?;
        let token = password::random_token();
        setup_token::Entity::insert(setup_token::ActiveModel {
            token_hash: Set(password::token_hash(&token)),
            expires_at: Set(now_ms() + SETUP_TTL_MS),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(token)
    }

    /// Whether `token` is a live setup token (and there is still no operator).
    pub async fn setup_token_valid(&self, token: &str) -> Result<bool, AccountError> {
        let row = setup_token::Entity::find_by_id(password::token_hash(token))
            .one(&self.db)
            .await?;
        Ok(row.is_some_and(|r| r.expires_at > now_ms()) && self.count().await? == 0)
    }

    /// Uses the setup token: creates the first admin and kills the token.
    pub async fn complete_setup(
        &self,
        token: &str,
        name: &str,
        password: &str,
    ) -> Result<Option<operator::Model>, AccountError> {
        if !self.setup_token_valid(token).await? {
            return Ok(None);
        }
        let op = self.add(name, password, Role::Admin).await?;
        setup_token::Entity::delete_many().exec(&self.db).await?;
        Ok(Some(op))
    }
}
