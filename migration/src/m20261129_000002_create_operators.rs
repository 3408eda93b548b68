//! Operators and what secures them: sessions, API tokens, login throttling, the one-time setup
//! token, and the audit log.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000002_create_operators"
    }
}

#[derive(DeriveIden)]
enum NightshiftOperators {
    Table,
    Id,
    Name,
    PasswordHash,
    Role,
    Disabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NightshiftApiTokens {
    Table,
    Id,
    OperatorId,
    Name,
    TokenHash,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum NightshiftSessions {
    Table,
    Id,
    Data,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum NightshiftLoginThrottle {
    Table,
    Key,
    Failures,
    WindowStart,
    LockedUntil,
}

#[derive(DeriveIden)]
enum NightshiftSetupTokens {
    Table,
    TokenHash,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum NightshiftAudit {
    Table,
    Id,
    At,
    Actor,
    Address,
    Action,
    Target,
    Outcome,
    Detail,
}

fn id_col<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use NightshiftOperators as O;
        manager
            .create_table(
                Table::create()
                    .table(O::Table)
                    .if_not_exists()
                    .col(id_col(O::Id))
                    .col(ColumnDef::new(O::Name).string().not_null().unique_key())
                    .col(ColumnDef::new(O::PasswordHash).string().not_null())
                    .col(ColumnDef::new(O::Role).string().not_null())
                    .col(
                        ColumnDef::new(O::Disabled)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(O::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(O::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        use NightshiftApiTokens as T;
        manager
            .create_table(
                Table::create()
                    .table(T::Table)
                    .if_not_exists()
                    .col(id_col(T::Id))
                    .col(ColumnDef::new(T::OperatorId).big_integer().not_null())
                    .col(ColumnDef::new(T::Name).string().not_null())
                    .col(
                        ColumnDef::new(T::TokenHash)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(T::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(T::LastUsedAt).big_integer())
                    .col(ColumnDef::new(T::RevokedAt).big_integer())
                    .to_owned(),
            )
            .await?;
        use NightshiftSessions as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(S::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(S::Data).text().not_null())
                    .col(ColumnDef::new(S::ExpiresAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        use NightshiftLoginThrottle as L;
        manager
            .create_table(
                Table::create()
                    .table(L::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(L::Key).string().not_null().primary_key())
                    .col(ColumnDef::new(L::Failures).integer().not_null())
                    .col(ColumnDef::new(L::WindowStart).big_integer().not_null())
                    .col(ColumnDef::new(L::LockedUntil).big_integer())
                    .to_owned(),
            )
            .await?;
        use NightshiftSetupTokens as U;
        manager
            .create_table(
                Table::create()
                    .table(U::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(U::TokenHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(U::ExpiresAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        use NightshiftAudit as A;
        manager
            .create_table(
                Table::create()
                    .table(A::Table)
                    .if_not_exists()
                    .col(id_col(A::Id))
                    .col(ColumnDef::new(A::At).big_integer().not_null())
                    .col(ColumnDef::new(A::Actor).string().not_null())
                    .col(ColumnDef::new(A::Address).string().not_null())
                    .col(ColumnDef::new(A::Action).string().not_null())
                    .col(ColumnDef::new(A::Target).string())
                    .col(ColumnDef::new(A::Outcome).string().not_null())
                    .col(ColumnDef::new(A::Detail).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("nightshift_audit_target")
                    .table(A::Table)
                    .col(A::Target)
                    .col(A::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            NightshiftAudit::Table.into_iden(),
            NightshiftSetupTokens::Table.into_iden(),
            NightshiftLoginThrottle::Table.into_iden(),
            NightshiftSessions::Table.into_iden(),
            NightshiftApiTokens::Table.into_iden(),
            NightshiftOperators::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
