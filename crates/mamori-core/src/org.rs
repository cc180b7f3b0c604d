//! Organizations: roles, the "may invite" permission, and the decisions about who may do what
//! inside an organization (ORG-1 to ORG-5). Every decision here is pure and returns a reason
//! when it says no; the service layer turns a yes into a capability.

use crate::error::FieldError;

/// ORG-1: administrator, member ("general user"), guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrgRole {
    Guest,
    Member,
    Admin,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
            OrgRole::Guest => "guest",
        }
    }

    pub fn parse(text: &str) -> Option<OrgRole> {
        match text {
            "admin" => Some(OrgRole::Admin),
            "member" => Some(OrgRole::Member),
            "guest" => Some(OrgRole::Guest),
            _ => None,
        }
    }

    pub fn parse_field(field: &str, text: &str) -> Result<OrgRole, FieldError> {
        OrgRole::parse(text).ok_or_else(|| FieldError::new(field, "must be admin, member or guest"))
    }
}

/// One account's standing in one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub role: OrgRole,
    /// Only meaningful for members: administrators may always invite, guests never.
    pub can_invite: bool,
}

impl Membership {
    /// The stored flag normalized: administrators always may invite, guests never.
    pub fn new(role: OrgRole, can_invite: bool) -> Membership {
        Membership {
            role,
            can_invite: match role {
                OrgRole::Admin => true,
                OrgRole::Member => can_invite,
                OrgRole::Guest => false,
            },
        }
    }

    pub fn is_admin(self) -> bool {
        self.role == OrgRole::Admin
    }

    /// ORG-2: anyone holding invite permission may invite.
    pub fn may_invite(self) -> bool {
        self.can_invite
    }

    /// Guests see themselves and what they are given, not the member list.
    pub fn may_see_members(self) -> bool {
        self.role != OrgRole::Guest
    }

    /// ORG-4: administrators and members create teams; guests do not.
    pub fn may_create_teams(self) -> bool {
        self.role != OrgRole::Guest
    }
}

/// Why a decision said no, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub &'static str);

/// An inviter cannot grant more than it holds: only administrators invite administrators, and
/// a member holding the invite permission may pass it on to members it invites.
pub fn check_invitation(
    inviter: Membership,
    role: OrgRole,
    can_invite: bool,
) -> Result<(), Denied> {
    if !inviter.may_invite() {
        return Err(Denied("you may not invite people to this organization"));
    }
    if role == OrgRole::Admin && !inviter.is_admin() {
        return Err(Denied("only administrators may invite administrators"));
    }
    if can_invite && role == OrgRole::Guest {
        return Err(Denied("guests cannot hold the invite permission"));
    }
    Ok(())
}

/// Changing a member's role or invite permission: administrators only, and never leaving the
/// organization without an administrator.
pub fn check_role_change(
    actor: Membership,
    current: Membership,
    next: Membership,
    n_admins: u64,
) -> Result<(), Denied> {
    if !actor.is_admin() {
        return Err(Denied("only administrators may change roles"));
    }
    if current.is_admin() && !next.is_admin() && n_admins <= 1 {
        return Err(Denied(
            "the organization's last administrator cannot be demoted",
        ));
    }
    Ok(())
}

/// Removing `target` from the organization: administrators remove anyone, anyone may leave,
/// and the last administrator may do neither.
pub fn check_removal(
    actor: Membership,
    actor_is_target: bool,
    target: Membership,
    n_admins: u64,
) -> Result<(), Denied> {
    if !actor.is_admin() && !actor_is_target {
        return Err(Denied("only administrators may remove other members"));
    }
    if target.is_admin() && n_admins <= 1 {
        return Err(Denied(
            "the organization's last administrator cannot leave or be removed",
        ));
    }
    Ok(())
}

/// Managing a team (rename, delete, members): its creator or an administrator.
pub fn may_manage_team(actor: Membership, actor_created_it: bool) -> bool {
    actor.is_admin() || (actor_created_it && actor.role != OrgRole::Guest)
}

/// ORG-5: how an organization uses an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppMode {
    /// Every member of the organization is an active member of the app.
    All,
    /// Only the members an administrator selected.
    Selected,
}

impl AppMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AppMode::All => "all",
            AppMode::Selected => "selected",
        }
    }

    pub fn parse(text: &str) -> Option<AppMode> {
        match text {
            "all" => Some(AppMode::All),
            "selected" => Some(AppMode::Selected),
            _ => None,
        }
    }
}

/// Whether a member is an active member of an app the organization enabled.
pub fn is_active_app_member(mode: AppMode, selected: bool) -> bool {
    match mode {
        AppMode::All => true,
        AppMode::Selected => selected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: Membership = Membership {
        role: OrgRole::Admin,
        can_invite: true,
    };
    const INVITER: Membership = Membership {
        role: OrgRole::Member,
        can_invite: true,
    };
    const MEMBER: Membership = Membership {
        role: OrgRole::Member,
        can_invite: false,
    };
    const GUEST: Membership = Membership {
        role: OrgRole::Guest,
        can_invite: false,
    };

    #[test]
    fn invitations() {
        assert!(check_invitation(ADMIN, OrgRole::Admin, false).is_ok());
        assert!(check_invitation(INVITER, OrgRole::Member, true).is_ok());
        assert!(check_invitation(INVITER, OrgRole::Guest, false).is_ok());
        assert!(check_invitation(INVITER, OrgRole::Admin, false).is_err());
        assert!(check_invitation(MEMBER, OrgRole::Guest, false).is_err());
        assert!(check_invitation(GUEST, OrgRole::Guest, false).is_err());
        assert!(check_invitation(ADMIN, OrgRole::Guest, true).is_err());
        assert_eq!(Membership::new(OrgRole::Guest, true), GUEST);
        assert_eq!(Membership::new(OrgRole::Admin, false), ADMIN);
    }

    #[test]
    fn last_administrator_is_kept() {
        assert!(check_role_change(ADMIN, ADMIN, MEMBER, 1).is_err());
        assert!(check_role_change(ADMIN, ADMIN, MEMBER, 2).is_ok());
        assert!(check_role_change(MEMBER, MEMBER, ADMIN, 1).is_err());
        assert!(check_removal(ADMIN, true, ADMIN, 1).is_err());
        assert!(check_removal(MEMBER, true, MEMBER, 1).is_ok());
        assert!(check_removal(MEMBER, false, GUEST, 1).is_err());
        assert!(check_removal(ADMIN, false, MEMBER, 1).is_ok());
    }

    #[test]
    fn teams_and_apps() {
        assert!(may_manage_team(ADMIN, false));
        assert!(may_manage_team(MEMBER, true));
        assert!(!may_manage_team(MEMBER, false));
        assert!(!may_manage_team(GUEST, true));
        assert!(is_active_app_member(AppMode::All, false));
        assert!(!is_active_app_member(AppMode::Selected, false));
    }
}
