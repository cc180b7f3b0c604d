//! Deletion policies as data (DEL-2, DEL-6, AUD-3): a TOML document of rules, each saying for
//! which plan kinds, after which trigger, counted from which date, the organization is deleted
//! and its data purged, and within how many days. Two policies are built in; see
//! `docs/design/lifecycle.md` for the format.

use std::fmt;

/// The built-in policies: (name, TOML source). The first is the default.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "whitepaper-2025",
        include_str!("policies/whitepaper-2025.toml"),
    ),
    ("terms-v3", include_str!("policies/terms-v3.toml")),
];

pub const DEFAULT_POLICY: &str = "whitepaper-2025";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plan {
    Free,
    Trial,
    Paid,
    ClassicPaid,
    ClassicTrial,
    ClassicFree,
}

impl Plan {
    pub const ALL: [Plan; 6] = [
        Plan::Free,
        Plan::Trial,
        Plan::Paid,
        Plan::ClassicPaid,
        Plan::ClassicTrial,
        Plan::ClassicFree,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Trial => "trial",
            Plan::Paid => "paid",
            Plan::ClassicPaid => "classic_paid",
            Plan::ClassicTrial => "classic_trial",
            Plan::ClassicFree => "classic_free",
        }
    }

    pub fn parse(text: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|plan| plan.as_str() == text)
    }

    pub fn is_classic(self) -> bool {
        matches!(
            self,
            Plan::ClassicPaid | Plan::ClassicTrial | Plan::ClassicFree
        )
    }

    pub fn is_trial(self) -> bool {
        matches!(self, Plan::Trial | Plan::ClassicTrial)
    }

    pub fn is_paid(self) -> bool {
        matches!(self, Plan::Paid | Plan::ClassicPaid)
    }
}

/// Whose data a rule deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Organization,
    AuditLog,
    Account,
    ManagedAccount,
}

impl DataKind {
    fn parse(text: &str) -> Option<DataKind> {
        Some(match text {
            "organization" => DataKind::Organization,
            "audit_log" => DataKind::AuditLog,
            "account" => DataKind::Account,
            "managed_account" => DataKind::ManagedAccount,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Organization => "organization",
            DataKind::AuditLog => "audit_log",
            DataKind::Account => "account",
            DataKind::ManagedAccount => "managed_account",
        }
    }
}

/// What starts a rule's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The contract administrator deleted the organization, or the contract was cancelled.
    Deleted,
    TrialEnded,
    Suspended,
    ContractEnded,
    /// terms-v3: a free organization not used for a while.
    Unused,
    AccountDeleted,
    ManagedAccountDeleted,
    /// An audit event's age.
    Stored,
}

impl Trigger {
    fn parse(text: &str) -> Option<Trigger> {
        Some(match text {
            "deleted" => Trigger::Deleted,
            "trial_ended" => Trigger::TrialEnded,
            "suspended" => Trigger::Suspended,
            "contract_ended" => Trigger::ContractEnded,
            "unused" => Trigger::Unused,
            "account_deleted" => Trigger::AccountDeleted,
            "managed_account_deleted" => Trigger::ManagedAccountDeleted,
            "stored" => Trigger::Stored,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Deleted => "deleted",
            Trigger::TrialEnded => "trial_ended",
            Trigger::Suspended => "suspended",
            Trigger::ContractEnded => "contract_ended",
            Trigger::Unused => "unused",
            Trigger::AccountDeleted => "account_deleted",
            Trigger::ManagedAccountDeleted => "managed_account_deleted",
            Trigger::Stored => "stored",
        }
    }
}

/// The date a rule's delays count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The trigger's own date.
    Trigger,
    /// The end of the current contract period (the trigger's date when there is none).
    PeriodEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub data: DataKind,
    pub plans: Vec<Plan>,
    pub trigger: Trigger,
    pub anchor: Anchor,
    /// Days from the anchor until the organization is deleted automatically (`trial_ended`,
    /// `suspended`).
    pub delete_after_days: Option<i64>,
    /// `unused`: days without use before the organization is asked whether to continue, and
    /// days it has to answer.
    pub ask_after_days: Option<i64>,
    pub confirm_within_days: Option<i64>,
    /// Days from the deletion (`deleted`: from the anchor) until the purge starts.
    pub purge_after_days: i64,
    /// Days the purge has, from its start, to complete.
    pub purge_within_days: i64,
    /// The line of the rule in its source, for messages.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub title: String,
    pub backup_retention_days: i64,
    pub exempt: Vec<String>,
    pub rules: Vec<Rule>,
    /// The TOML it was read from.
    pub source: String,
}

/// Why a policy was refused: the line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for PolicyError {}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    name: String,
    title: Option<String>,
    backup_retention_days: toml::Spanned<i64>,
    #[serde(default)]
    exempt: Vec<String>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleToml>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    id: String,
    data: String,
    plans: Vec<String>,
    trigger: String,
    anchor: Option<String>,
    delete_after_days: Option<i64>,
    ask_after_days: Option<i64>,
    confirm_within_days: Option<i64>,
    purge_after_days: Option<i64>,
    purge_within_days: Option<i64>,
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

impl Policy {
    /// A built-in policy by name.
    pub fn built_in(name: &str) -> Option<Policy> {
        BUILT_IN
            .iter()
            .find(|(built_in, _)| *built_in == name)
            // The built-in policies are checked by a unit test; one that did not parse would
            // simply not be offered.
            .and_then(|(_, source)| Policy::parse(source).ok())
    }

    /// Reads and checks a policy; the error names the line.
    pub fn parse(source: &str) -> Result<Policy, PolicyError> {
        let raw: PolicyToml = toml::from_str(source).map_err(|error| PolicyError {
            line: error.span().map_or(1, |span| line_of(source, span.start)),
            message: error.message().to_owned(),
        })?;
        let at = |offset: usize| line_of(source, offset);
        let name = raw.name.trim().to_owned();
        if name.is_empty()
            || name
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(PolicyError {
                line: 1,
                message: String::from("name must be letters, digits, '-', '_' or '.'"),
            });
        }
        if *raw.backup_retention_days.get_ref() < 0 {
            return Err(PolicyError {
                line: at(raw.backup_retention_days.span().start),
                message: String::from("backup_retention_days must not be negative"),
            });
        }
        let mut rules = Vec::new();
        for spanned in raw.rule {
            let line = at(spanned.span().start);
            let rule = check_rule(spanned.into_inner(), line)?;
            if rules.iter().any(|other: &Rule| other.id == rule.id) {
                return Err(PolicyError {
                    line,
                    message: format!("rule id `{}` is used twice", rule.id),
                });
            }
            // Two rules for the same data, plan and trigger would make the outcome depend on
            // their order.
            for other in &rules {
                if other.data == rule.data
                    && other.trigger == rule.trigger
                    && let Some(plan) = rule.plans.iter().find(|plan| other.plans.contains(plan))
                {
                    return Err(PolicyError {
                        line,
                        message: format!(
                            "rule `{}` overlaps rule `{}` (line {}) for plan `{}` and trigger `{}`",
                            rule.id,
                            other.id,
                            other.line,
                            plan.as_str(),
                            rule.trigger.as_str()
                        ),
                    });
                }
            }
            rules.push(rule);
        }
        // Every plan must say when a deleted organization is purged.
        for plan in Plan::ALL {
            if !rules.iter().any(|rule| {
                rule.data == DataKind::Organization
                    && rule.trigger == Trigger::Deleted
                    && rule.plans.contains(&plan)
            }) {
                return Err(PolicyError {
                    line: line_of(source, source.len()),
                    message: format!(
                        "no organization rule with trigger `deleted` covers plan `{}`",
                        plan.as_str()
                    ),
                });
            }
        }
        Ok(Policy {
            name,
            title: raw.title.unwrap_or_default(),
            backup_retention_days: raw.backup_retention_days.into_inner(),
            exempt: raw.exempt,
            rules,
            source: source.to_owned(),
        })
    }

    /// The rule for `data`, `plan` and `trigger`, if any.
    pub fn rule(&self, data: DataKind, plan: Plan, trigger: Trigger) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.data == data && rule.trigger == trigger && rule.plans.contains(&plan))
    }

    /// The organization rule for `plan` and `trigger`.
    pub fn org_rule(&self, plan: Plan, trigger: Trigger) -> Option<&Rule> {
        self.rule(DataKind::Organization, plan, trigger)
    }
}

fn check_rule(raw: RuleToml, line: usize) -> Result<Rule, PolicyError> {
    let refuse = |message: String| PolicyError { line, message };
    let data = DataKind::parse(&raw.data).ok_or_else(|| {
        refuse(format!(
            "unknown data `{}` (organization, audit_log, account, managed_account)",
            raw.data
        ))
    })?;
    let trigger = Trigger::parse(&raw.trigger)
        .ok_or_else(|| refuse(format!("unknown trigger `{}`", raw.trigger)))?;
    let anchor = match raw.anchor.as_deref() {
        None | Some("trigger") => Anchor::Trigger,
        Some("period_end") => Anchor::PeriodEnd,
        Some(other) => {
            return Err(refuse(format!(
                "unknown anchor `{other}` (trigger, period_end)"
            )));
        }
    };
    if raw.plans.is_empty() {
        return Err(refuse(String::from(
            "plans must name at least one plan kind",
        )));
    }
    let mut plans = Vec::new();
    for plan in &raw.plans {
        let plan = Plan::parse(plan).ok_or_else(|| {
            refuse(format!(
                "unknown plan kind `{plan}` (free, trial, paid, classic_paid, classic_trial, \
                 classic_free)"
            ))
        })?;
        plans.push(plan);
    }
    let days = |value: Option<i64>, field: &str| -> Result<i64, PolicyError> {
        let value =
            value.ok_or_else(|| refuse(format!("rule `{}`: {field} is missing", raw.id)))?;
        if value < 0 {
            return Err(refuse(format!(
                "rule `{}`: {field} must not be negative",
                raw.id
            )));
        }
        if value > 36_500 {
            return Err(refuse(format!(
                "rule `{}`: {field} must be at most 36500 days",
                raw.id
            )));
        }
        Ok(value)
    };
    let purge_after_days = days(raw.purge_after_days, "purge_after_days")?;
    let purge_within_days = days(raw.purge_within_days, "purge_within_days")?;
    if purge_within_days == 0 {
        return Err(refuse(format!(
            "rule `{}`: purge_within_days must be at least 1",
            raw.id
        )));
    }
    let automatic = data == DataKind::Organization
        && matches!(trigger, Trigger::TrialEnded | Trigger::Suspended);
    let delete_after_days = match (automatic, raw.delete_after_days) {
        (true, value) => Some(days(value, "delete_after_days")?),
        (false, None) => None,
        (false, Some(_)) => {
            return Err(refuse(format!(
                "rule `{}`: delete_after_days applies only to organization rules with trigger \
                 trial_ended or suspended",
                raw.id
            )));
        }
    };
    let unused = trigger == Trigger::Unused;
    if unused && data != DataKind::Organization {
        return Err(refuse(format!(
            "rule `{}`: trigger unused applies only to organization rules",
            raw.id
        )));
    }
    let (ask_after_days, confirm_within_days) = if unused {
        (
            Some(days(raw.ask_after_days, "ask_after_days")?),
            Some(days(raw.confirm_within_days, "confirm_within_days")?),
        )
    } else if raw.ask_after_days.is_some() || raw.confirm_within_days.is_some() {
        return Err(refuse(format!(
            "rule `{}`: ask_after_days and confirm_within_days apply only to trigger unused",
            raw.id
        )));
    } else {
        (None, None)
    };
    if raw.id.trim().is_empty() {
        return Err(refuse(String::from("id must not be empty")));
    }
    Ok(Rule {
        id: raw.id,
        data,
        plans,
        trigger,
        anchor,
        delete_after_days,
        ask_after_days,
        confirm_within_days,
        purge_after_days,
        purge_within_days,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policies_are_valid() {
        for (name, _) in BUILT_IN {
            let policy = Policy::built_in(name).unwrap();
            assert_eq!(policy.name, *name);
        }
        let default = Policy::built_in(DEFAULT_POLICY).unwrap();
        let rule = default.org_rule(Plan::Trial, Trigger::TrialEnded).unwrap();
        assert_eq!(rule.delete_after_days, Some(30));
        assert_eq!(rule.purge_after_days, 180);
    }

    fn refused(source: &str) -> PolicyError {
        Policy::parse(source).unwrap_err()
    }

    const BASE: &str = "name = \"x\"\nbackup_retention_days = 30\n";
    const DELETED: &str = "[[rule]]\nid = \"d\"\ndata = \"organization\"\nplans = [\"free\", \
        \"trial\", \"paid\", \"classic_paid\", \"classic_trial\", \"classic_free\"]\ntrigger = \
        \"deleted\"\npurge_after_days = 1\npurge_within_days = 10\n";

    #[test]
    fn a_minimal_policy_is_accepted() {
        let policy = Policy::parse(&format!("{BASE}{DELETED}")).unwrap();
        assert_eq!(policy.rules.len(), 1);
        assert_eq!(policy.rules[0].line, 3);
    }

    #[test]
    fn bad_rules_name_their_line() {
        let negative = format!("{BASE}{}", DELETED.replace("= 1\n", "= -1\n"));
        let error = refused(&negative);
        assert_eq!(error.line, 3, "{error}");
        assert!(error.message.contains("negative"), "{error}");

        let unknown = format!("{BASE}{}", DELETED.replace("\"free\"", "\"gold\""));
        let error = refused(&unknown);
        assert_eq!(error.line, 3);
        assert!(
            error.message.contains("unknown plan kind `gold`"),
            "{error}"
        );

        let missing = format!("{BASE}{}", DELETED.replace("purge_within_days = 10\n", ""));
        let error = refused(&missing);
        assert!(
            error.message.contains("purge_within_days is missing"),
            "{error}"
        );

        let syntax = format!("{BASE}{DELETED}purge = [\n");
        let error = refused(&syntax);
        assert_eq!(error.line, 10, "{error}");
    }
}
