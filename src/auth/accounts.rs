//! Operators, their API tokens, login throttling and the first-run setup token, in the database.
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Statement, TransactionTrait,
};

use super::password;
use crate::clock::now_ms;
use crate::entity::{api_token, login_throttle, operator, setup_token};
use crate::role::Role;

/// A token's last use is recorded at most this often (ms).
const LAST_USED_EVERY_MS: i64 = 60_000;

/// Login attempts allowed for one name from one address within the window (a success starts
/// afresh). After them, that name is refused from that address until the window ends — and
/// only from there: the same name from another address still gets in.
pub const MAX_FAILURES: i32 = 5;
/// Login attempts allowed from one address within the window, whatever the names (a success
/// gives its attempt back, so an office behind one proxy is not locked by its own logins).
pub const ADDRESS_MAX: i32 = 50;
/// Attempts on one name, from all addresses, after which it is slowed down (never locked).
pub const ACCOUNT_SLOW_AFTER: i32 = 20;
/// The slow-down: one attempt per this long on that name.
pub const ACCOUNT_GAP_MS: i64 = 1000;
/// Unknown API tokens allowed from one address within the window.
pub const TOKEN_MAX: i32 = 20;
const WINDOW_MS: i64 = 15 * 60 * 1000;
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
    /// Too many password hashes at once: try again shortly.
    #[error("the server is busy; try again in a moment")]
    Busy,
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// How a login attempt ended.
#[derive(Debug)]
pub(crate) enum Login {
    /// Name and password match an operator who is not disabled.
    Ok(operator::Model),
    /// Wrong name or password (or a disabled operator): one answer for all.
    Invalid,
    /// Too many attempts for this account or address: wait.
    Throttled,
    /// Too many password checks at once on this server: try again shortly.
    Busy,
}

/// The throttle rows one login attempt counts against.
struct ThrottleKeys {
    /// `addr:IP`: every attempt from the address.
    address: Option<String>,
    /// `pair:NAME|IP`: the name from this address.
    pair: Option<String>,
    /// `user:NAME`: the name from anywhere (the slow-down).
    account: String,
}

impl ThrottleKeys {
    fn new(name: &str, address: &str) -> Self {
        // A name no account can have shares one key, so junk names cannot grow the table.
        let name = if valid_name(name) { name } else { "(invalid)" };
        // Without a known address (no ConnectInfo), everyone would share one key: only the name
        // counts then.
        let known = !address.is_empty() && address != "unknown";
        ThrottleKeys {
            address: known.then(|| format!("addr:{address}")),
            pair: known.then(|| format!("pair:{name}|{address}")),
            account: format!("user:{name}"),
        }
    }
}

/// `?` placeholders as the backend spells them.
fn numbered(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// The operator accounts of the built-in login ([`crate::auth::Auth::sessions`]): add them, change
/// their role, password or access, and give them API tokens. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use nightshift::Role;
/// use nightshift::auth::Accounts;
///
/// let db = nightshift::store::connect("sqlite://jobs.db?mode=rwc").await?;
/// let accounts = Accounts::new(db);
/// accounts.add("alice", "correct horse battery", Role::Operator).await?;
/// let (token, _row) = accounts.create_token("alice", "deploy script").await?;
/// println!("Authorization: Bearer {token}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Accounts {
    db: DatabaseConnection,
}

fn new_operator(name: &str, password_hash: String, role: Role) -> operator::ActiveModel {
    let now = now_ms();
    operator::ActiveModel {
        id: NotSet,
        name: Set(name.to_owned()),
        password_hash: Set(password_hash),
        role: Set(role.as_str().to_owned()),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl Accounts {
    /// The accounts stored in `db` (a migrated database, e.g. from
    /// [`crate::store::connect`] or `worker.store().connection()`).
    pub fn new(db: DatabaseConnection) -> Self {
        Accounts { db }
    }

    /// How many operators exist.
    pub async fn count(&self) -> Result<u64, AccountError> {
        Ok(operator::Entity::find().count(&self.db).await?)
    }

    /// Adds an operator. Refused for an invalid or taken name and a password under 8
    /// characters.
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
        let hash = password::hash_gated(password)
            .await
            .map_err(|_| AccountError::Busy)?;
        Ok(operator::Entity::insert(new_operator(name, hash, role))
            .exec_with_returning(&self.db)
            .await?)
    }

    /// The operator named `name`, if any.
    pub async fn by_name(&self, name: &str) -> Result<Option<operator::Model>, AccountError> {
        Ok(operator::Entity::find()
            .filter(operator::Column::Name.eq(name))
            .one(&self.db)
            .await?)
    }

    /// The operator with id `id`; [`AccountError::NotFound`] if there is none.
    pub async fn by_id(&self, id: i64) -> Result<operator::Model, AccountError> {
        operator::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("operator {id}")))
    }

    /// Every operator, by name.
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

    /// Changes an operator's role; it applies to their next request (sessions and API tokens
    /// alike).
    pub async fn set_role(&self, id: i64, role: Role) -> Result<(), AccountError> {
        self.set(id, operator::Column::Role, role.as_str().into())
            .await
    }

    /// Disables an operator (no login, their API tokens refused), or enables them again.
    pub async fn set_disabled(&self, id: i64, disabled: bool) -> Result<(), AccountError> {
        self.set(id, operator::Column::Disabled, disabled.into())
            .await
    }

    /// Sets an operator's password (at least 8 characters).
    pub async fn set_password(&self, id: i64, password: &str) -> Result<(), AccountError> {
        if password.chars().count() < 8 {
            return Err(AccountError::WeakPassword);
        }
        let hash = password::hash_gated(password)
            .await
            .map_err(|_| AccountError::Busy)?;
        self.set(id, operator::Column::PasswordHash, hash.into())
            .await
    }

    /// Checks a login. Every attempt is counted (atomically, before any hashing) against the
    /// name from this address, the address and the name; a throttled attempt is refused without
    /// hashing, and the password check runs behind the process-wide hashing gate. Unknown names
    /// take as long as known ones.
    pub(crate) async fn login(
        &self,
        name: &str,
        password: &str,
        address: &str,
    ) -> Result<Login, AccountError> {
        let now = now_ms();
        let keys = ThrottleKeys::new(name, address);
        if !self.reserve(&keys, now).await? {
            return Ok(Login::Throttled);
        }
        let op = if valid_name(name) {
            self.by_name(name).await?
        } else {
            None
        };
        let stored = op.as_ref().map(|o| o.password_hash.clone());
        let given = password.to_owned();
        let checked = password::gated(move || match stored {
            Some(h) => password::verify(&given, &h),
            None => {
                password::verify_dummy(&given);
                false
            }
        })
        .await;
        let matches = match checked {
            Ok(m) => m,
            Err(password::Busy) => {
                // Not the caller's fault: the attempt does not count.
                self.refund(&keys, true).await?;
                return Ok(Login::Busy);
            }
        };
        match op {
            Some(op) if matches && !op.disabled => {
                self.refund(&keys, false).await?;
                if password::needs_rehash(&op.password_hash)
                    && let Ok(h) = password::hash_gated(password).await
                {
                    self.set(op.id, operator::Column::PasswordHash, h.into())
                        .await?;
                }
                Ok(Login::Ok(op))
            }
            _ => Ok(Login::Invalid),
        }
    }

    /// Counts one attempt against each throttle key; `false` when any of them says wait.
    /// Keys are checked broadest first, so a refused attempt leaves the narrower keys alone.
    async fn reserve(&self, keys: &ThrottleKeys, now: i64) -> Result<bool, AccountError> {
        if let Some(addr) = &keys.address
            && self.count_attempt(addr, now).await? > ADDRESS_MAX
        {
            tracing::warn!(key = %addr, "login attempts throttled");
            return Ok(false);
        }
        if let Some(pair) = &keys.pair
            && self.count_attempt(pair, now).await? > MAX_FAILURES
        {
            tracing::warn!(key = %pair, "login attempts throttled");
            return Ok(false);
        }
        if !self.count_account_attempt(&keys.account, now).await? {
            tracing::warn!(key = %keys.account, "login attempts slowed down");
            return Ok(false);
        }
        Ok(true)
    }

    /// Adds one attempt to `key` in its current window (a new window once the old one is
    /// over) and returns the count after it: one statement, so parallel attempts all count.
    async fn count_attempt(&self, key: &str, now: i64) -> Result<i32, AccountError> {
        Ok(self
            .upsert_attempt(key, now, None)
            .await?
            .unwrap_or(i32::MAX))
    }

    /// The per-account slow-down: past [`ACCOUNT_SLOW_AFTER`] attempts in a window, one attempt
    /// per [`ACCOUNT_GAP_MS`] from anywhere. Never a lock, so a guesser spread over many
    /// addresses is slowed down while the real user still gets in. `false`: too soon.
    async fn count_account_attempt(&self, key: &str, now: i64) -> Result<bool, AccountError> {
        Ok(self
            .upsert_attempt(key, now, Some((ACCOUNT_SLOW_AFTER, ACCOUNT_GAP_MS)))
            .await?
            .is_some())
    }

    /// The one throttle statement. With `gap = Some((after, ms))`, past `after` attempts the
    /// row also says when the next attempt may come (`locked_until`), and an attempt before
    /// then is not counted and returns `None`.
    async fn upsert_attempt(
        &self,
        key: &str,
        now: i64,
        gap: Option<(i32, i64)>,
    ) -> Result<Option<i32>, AccountError> {
        const T: &str = "nightshift_login_throttle";
        let cut = now - WINDOW_MS;
        let mut values: Vec<sea_orm::Value> =
            vec![key.into(), now.into(), cut.into(), cut.into(), now.into()];
        let (set_gap, only_after) = match gap {
            Some((after, ms)) => {
                values.extend([cut.into(), after.into(), (now + ms).into(), now.into()]);
                (
                    format!(
                        ", locked_until = CASE WHEN {T}.window_start > ? \
                         AND {T}.failures + 1 > ? THEN ? ELSE NULL END"
                    ),
                    format!(" WHERE {T}.locked_until IS NULL OR {T}.locked_until <= ?"),
                )
            }
            None => (String::new(), String::new()),
        };
        let backend = self.db.get_database_backend();
        let sql = numbered(
            backend,
            &format!(
                "INSERT INTO {T} (\"key\", failures, window_start, locked_until) \
                 VALUES (?, 1, ?, NULL) \
                 ON CONFLICT (\"key\") DO UPDATE SET \
                   failures = CASE WHEN {T}.window_start <= ? THEN 1 ELSE {T}.failures + 1 END, \
                   window_start = CASE WHEN {T}.window_start <= ? THEN ? \
                     ELSE {T}.window_start END{set_gap}{only_after} \
                 RETURNING failures"
            ),
        );
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        Ok(row.map(|r| r.try_get::<i32>("", "failures")).transpose()?)
    }

    /// Gives attempts back: after a success (the account and the pair start afresh, the
    /// address gets its attempt back), or when the server was too busy to check (`all`).
    async fn refund(&self, keys: &ThrottleKeys, all: bool) -> Result<(), AccountError> {
        let mut give_back: Vec<String> = keys.address.iter().cloned().collect();
        let mut forget: Vec<String> = vec![];
        if all {
            give_back.extend(keys.pair.iter().cloned());
            give_back.push(keys.account.clone());
        } else {
            forget.extend(keys.pair.iter().cloned());
            forget.push(keys.account.clone());
        }
        if !give_back.is_empty() {
            login_throttle::Entity::update_many()
                .col_expr(
                    login_throttle::Column::Failures,
                    Expr::col(login_throttle::Column::Failures).sub(1),
                )
                .filter(login_throttle::Column::Key.is_in(give_back))
                .filter(login_throttle::Column::Failures.gt(0))
                .exec(&self.db)
                .await?;
        }
        if !forget.is_empty() {
            login_throttle::Entity::delete_many()
                .filter(login_throttle::Column::Key.is_in(forget))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Whether `address` has sent too many unknown API tokens lately (checked before any lookup).
    pub(crate) async fn token_throttled(&self, address: &str) -> Result<bool, AccountError> {
        let row = login_throttle::Entity::find_by_id(format!("token:{address}"))
            .one(&self.db)
            .await?;
        Ok(row.is_some_and(|r| r.window_start > now_ms() - WINDOW_MS && r.failures >= TOKEN_MAX))
    }

    /// Counts an unknown or revoked API token sent from `address`.
    pub(crate) async fn token_failed(&self, address: &str) -> Result<(), AccountError> {
        self.count_attempt(&format!("token:{address}"), now_ms())
            .await?;
        Ok(())
    }

    /// Deletes throttle rows whose window is over. Returns how many.
    pub(crate) async fn prune_throttle(&self) -> Result<u64, AccountError> {
        let now = now_ms();
        let res = login_throttle::Entity::delete_many()
            .filter(login_throttle::Column::WindowStart.lte(now - WINDOW_MS))
            .filter(
                Condition::any()
                    .add(login_throttle::Column::LockedUntil.is_null())
                    .add(login_throttle::Column::LockedUntil.lte(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
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

    /// Revokes an API token; [`AccountError::NotFound`] if it does not exist or is already
    /// revoked.
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
    pub(crate) async fn operator_for_token(
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
        // Bookkeeping only, to the minute: a write (a commit flushed to disk) on every request
        // put a slow tail on scripts' reads. A failed write (a full disk) must not refuse one.
        let now = now_ms();
        if t.last_used_at
            .is_some_and(|at| now - at < LAST_USED_EVERY_MS)
        {
            return Ok(Some(op));
        }
        if let Err(e) = api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .filter(api_token::Column::Id.eq(t.id))
            .exec(&self.db)
            .await
        {
            tracing::warn!(token = t.id, "could not record the token's last use: {e}");
        }
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
    pub(crate) async fn setup_token_valid(&self, token: &str) -> Result<bool, AccountError> {
        let row = setup_token::Entity::find_by_id(password::token_hash(token))
            .one(&self.db)
            .await?;
        Ok(row.is_some_and(|r| r.expires_at > now_ms()) && self.count().await? == 0)
    }

    /// Uses the setup token: creates the first admin and kills the token. The token is
    /// consumed (`DELETE … RETURNING`) in the same transaction that adds the admin, so of
    /// parallel requests with one link exactly one creates an admin.
    pub(crate) async fn complete_setup(
        &self,
        token: &str,
        name: &str,
        password: &str,
    ) -> Result<Option<operator::Model>, AccountError> {
        if !self.setup_token_valid(token).await? {
            return Ok(None);
        }
        if !valid_name(name) {
            return Err(AccountError::InvalidName);
        }
        if password.chars().count() < 8 {
            return Err(AccountError::WeakPassword);
        }
        // Hashing is slow: done before the transaction, which then only writes.
        let hash = password::hash_gated(password)
            .await
            .map_err(|_| AccountError::Busy)?;
        let txn = self.db.begin().await?;
        let consumed = setup_token::Entity::delete_many()
            .filter(setup_token::Column::TokenHash.eq(password::token_hash(token)))
            .filter(setup_token::Column::ExpiresAt.gt(now_ms()))
            .exec(&txn)
            .await?;
        if consumed.rows_affected != 1 || operator::Entity::find().count(&txn).await? != 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let op = operator::Entity::insert(new_operator(name, hash, Role::Admin))
            .exec_with_returning(&txn)
            .await?;
        setup_token::Entity::delete_many().exec(&txn).await?;
        txn.commit().await?;
        Ok(Some(op))
    }
}
