//! Rejections: why a command was refused. A rejection changes nothing and is returned to the
//! caller; each variant maps to exactly one error code of the API contract.

/// A command refused by [`crate::decide::decide`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Rejection {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("user id is taken")]
    UserExists,
    #[error("you are not friends with this user")]
    NotFriends,
    #[error("blocked")]
    Blocked,
    #[error("not a member of this conversation")]
    NotMember,
    #[error("only the group's owner or an admin may do this")]
    NotAdmin,
    #[error("you are muted in this group")]
    Muted,
    #[error("already friends")]
    AlreadyFriends,
    #[error("the owner must transfer ownership before leaving")]
    OwnerCannotLeave,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("this account is deactivated")]
    AccountDeactivated,
}

impl Rejection {
    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidRequest(_) => "invalid_request",
            Rejection::NotFound(_) => "not_found",
            Rejection::Forbidden(_) => "forbidden",
            Rejection::UserExists => "user_exists",
            Rejection::NotFriends => "not_friends",
            Rejection::Blocked => "blocked",
            Rejection::NotMember => "not_member",
            Rejection::NotAdmin => "not_admin",
            Rejection::Muted => "muted",
            Rejection::AlreadyFriends => "already_friends",
            Rejection::OwnerCannotLeave => "owner_cannot_leave",
            Rejection::PayloadTooLarge(_) => "payload_too_large",
            Rejection::AccountDeactivated => "account_deactivated",
        }
    }
}
