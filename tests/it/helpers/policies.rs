//! The policies many tests share, one per area (the resources each area's tests ask for).

/// Direct grants of every kind, no approvals: groups (`prod-db-admin` needs a reason,
/// `oncall` ends sessions), apps, a standard and a custom admin role.
pub const GRANTS_POLICY: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
require_reason = true
approvals_required = 0

[[resource]]
name = "engineering"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0

[[resource]]
name = "oncall"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
end_sessions_on_expiry = true

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0

[[resource]]
name = "aws-prod"
kind = "okta_app"
okta_id = "0oa1awsprod000000002"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0

[[resource]]
name = "custom-admin"
kind = "okta_role"
okta_id = "cr0custom00000000001"
resource_set = "iam1resourceset00001"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0
"#;

/// Requests and approvals: one approver group, a two-approver app with a ticket pattern, two
/// stages with break-glass, a step-up approval, any-one-of-three and all-three.
pub const REQUESTS_POLICY: &str = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
require_reason = true
approvers = { okta_groups = ["00g1dbowners00000002"] }
approvals_required = 1
requesters = { okta_groups = ["00g1engineering00004"] }
auto_approve = { okta_groups = ["00g1oncall0000000003"], max_duration = "1h" }

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "30m"
max_duration = "2h"
approvers = { users = ["bob@example.com", "carol@example.com", "dave@example.com"] }
approvals_required = 2
ticket_pattern = "^[A-Z]+-[0-9]+$"

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
break_glass = true
break_glass_max_duration = "15m"
stages = [
  { name = "owners", approvers = { users = ["bob@example.com"] }, approvals_required = 1 },
  { name = "security", approvers = { users = ["carol@example.com"] }, approvals_required = 1 },
]

[[resource]]
name = "aws-prod"
kind = "okta_app"
okta_id = "0oa1awsprod000000002"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
approval_step_up = "10m"

[[resource]]
name = "any-one"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com", "carol@example.com", "dave@example.com"] }
approvals_required = 1

[[resource]]
name = "all-three"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com", "carol@example.com", "dave@example.com"] }
approvals_required = 3
"#;

/// Slack flows: approvals by bob, one with a step-up, one with break-glass, one needing none.
pub const SLACK_POLICY: &str = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
require_reason = true
approvals_required = 1
approvers = { users = ["bob@example.com"] }
slack_channel = "C0APPROVALS"

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 1
approvers = { users = ["bob@example.com"] }
approval_step_up = "5m"

[[resource]]
name = "oncall"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvals_required = 1
approvers = { users = ["bob@example.com"] }
break_glass = true
break_glass_max_duration = "1h"
slack_channel = "C0APPROVALS"

[[resource]]
name = "engineering"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
"#;

/// Drift: `prod-db-admin` and payroll and user-admin enforced (carol allowed standing on
/// prod-db-admin), `oncall` reported, engineering not `jit_only`, one needing approval.
pub const DRIFT_POLICY: &str = r#"
[[resource]]
name = "needs-approval"
kind = "okta_group"
okta_id = "00g1dbowners00000002"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["carol@example.com"] }
approvals_required = 1
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "enforce"
allow_standing = ["carol@example.com"]

[[resource]]
name = "engineering"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0

[[resource]]
name = "oncall"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "report"

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0
jit_only = true
drift = "enforce"

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0
jit_only = true
drift = "enforce"
"#;

/// The sync: prod-db-admin enforced (external removal ends the grant), db-owners reported,
/// payroll restored when removed by hand, an admin role.
pub const SYNC_POLICY: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "enforce"
on_external_removal = "end"

[[resource]]
name = "db-owners"
kind = "okta_group"
okta_id = "00g1dbowners00000002"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "report"

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0
on_external_removal = "restore"

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0
"#;
