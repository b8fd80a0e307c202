//! Seed data: the org the simulator starts with.
//!
//! Why it exists: tests need fixed, well-known ids (the default seed), demos need a JSON file,
//! and benches need large orgs generated deterministically from a number.
//!
//! What it must never do: depend on wall-clock or thread randomness (a seed must always produce
//! the same org).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::SimError;

fn active() -> String {
    "ACTIVE".to_string()
}
fn okta_group() -> String {
    "OKTA_GROUP".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub id: String,
    pub login: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// Defaults to the login.
    #[serde(default)]
    pub email: Option<String>,
    /// STAGED, PROVISIONED, ACTIVE, RECOVERY, PASSWORD_EXPIRED, LOCKED_OUT, SUSPENDED, DEPROVISIONED.
    #[serde(default = "active")]
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// OKTA_GROUP, APP_GROUP or BUILT_IN. A BUILT_IN group always holds every user.
    #[serde(default = "okta_group", rename = "type")]
    pub kind: String,
    /// User ids.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApp {
    pub id: String,
    /// Okta's app name (`bookmark`, `aws_account_federation`, …).
    #[serde(default)]
    pub name: Option<String>,
    pub label: String,
    #[serde(default = "active")]
    pub status: String,
    /// Users assigned directly (scope USER).
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups assigned to the app: their members get scope GROUP assignments.
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRole {
    pub user_id: String,
    /// A standard role type, or CUSTOM with `role` and `resource_set`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub resource_set: Option<String>,
    /// Assignment id; generated when absent.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCustomRole {
    pub id: String,
    pub label: String,
    /// Resource sets this role may be assigned with.
    pub resource_sets: Vec<String>,
}

/// The whole starting org. JSON on disk (`--seed-file`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub groups: Vec<SeedGroup>,
    #[serde(default)]
    pub apps: Vec<SeedApp>,
    #[serde(default)]
    pub roles: Vec<SeedRole>,
    #[serde(default)]
    pub custom_roles: Vec<SeedCustomRole>,
}

impl Seed {
    pub fn from_json_file(path: &std::path::Path) -> Result<Seed, SimError> {
        let text = std::fs::read_to_string(path).map_err(SimError::SeedFile)?;
        serde_json::from_str(&text).map_err(SimError::SeedParse)
    }
}

fn user(id: &str, login: &str, first: &str, last: &str) -> SeedUser {
    SeedUser {
        id: id.into(),
        login: login.into(),
        first_name: first.into(),
        last_name: last.into(),
        email: None,
        status: active(),
    }
}

fn group(id: &str, name: &str, kind: &str, members: &[&str]) -> SeedGroup {
    SeedGroup {
        id: id.into(),
        name: name.into(),
        description: None,
        kind: kind.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

pub const ALICE: &str = "00u1alice00000000001";
pub const BOB: &str = "00u1bob0000000000002";
pub const CAROL: &str = "00u1carol00000000003";
pub const DAVE: &str = "00u1dave000000000004";
pub const BROKER: &str = "00u1jitbroker0000005";
pub const PROD_ADMINS: &str = "00g1prodadmins000001";
pub const DB_OWNERS: &str = "00g1dbowners00000002";
pub const ON_CALL: &str = "00g1oncall0000000003";
pub const ENGINEERING: &str = "00g1engineering00004";
pub const AWS_USERS: &str = "00g1appgroup00000005";
pub const EVERYONE: &str = "00g1everyone00000006";
pub const PAYROLL: &str = "0oa1payroll000000001";
pub const AWS_PROD: &str = "0oa1awsprod000000002";
pub const CUSTOM_ROLE: &str = "cr0custom00000000001";
pub const RESOURCE_SET: &str = "iam1resourceset00001";

/// The small fixed org other crates' tests rely on (ids are a contract; do not change them).
pub fn default_seed() -> Seed {
    Seed {
        users: vec![
            user(ALICE, "alice@example.com", "Alice", "Anders"),
            user(BOB, "bob@example.com", "Bob", "Brown"),
            user(CAROL, "carol@example.com", "Carol", "Chen"),
            user(DAVE, "dave@example.com", "Dave", "Diaz"),
            user(BROKER, "jit-broker@example.com", "JIT", "Broker"),
        ],
        groups: vec![
            group(PROD_ADMINS, "prod-admins", "OKTA_GROUP", &[]),
            group(DB_OWNERS, "db-owners", "OKTA_GROUP", &[BOB]),
            group(ON_CALL, "on-call", "OKTA_GROUP", &[CAROL]),
            group(
                ENGINEERING,
                "engineering",
                "OKTA_GROUP",
                &[ALICE, BOB, CAROL, DAVE],
            ),
            group(AWS_USERS, "aws-users", "APP_GROUP", &[DAVE]),
            group(EVERYONE, "Everyone", "BUILT_IN", &[]),
        ],
        apps: vec![
            SeedApp {
                id: PAYROLL.into(),
                name: Some("bookmark".into()),
                label: "payroll".into(),
                status: active(),
                users: vec![],
                groups: vec![],
            },
            SeedApp {
                id: AWS_PROD.into(),
                name: Some("amazon_aws".into()),
                label: "aws-prod".into(),
                status: active(),
                users: vec![],
                groups: vec![AWS_USERS.into()],
            },
        ],
        roles: vec![],
        custom_roles: vec![SeedCustomRole {
            id: CUSTOM_ROLE.into(),
            label: "JIT custom role".into(),
            resource_sets: vec![RESOURCE_SET.into()],
        }],
    }
}

/// A large org generated from `seed`: `users` users, `groups` groups (every 10th an APP_GROUP,
/// plus Everyone), each user in 1–5 random OKTA_GROUPs, 10 apps each assigned to 2 groups and
/// 20 users directly. Same numbers, same org.
pub fn generate(users: usize, groups: usize, seed: u64) -> Seed {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Seed {
        custom_roles: default_seed().custom_roles,
        ..Seed::default()
    };
    for i in 0..users {
        out.users.push(SeedUser {
            id: format!("00u{:017}", i + 1),
            login: format!("user{}@example.com", i + 1),
            first_name: format!("User{}", i + 1),
            last_name: "Generated".into(),
            email: None,
            status: if rng.gen_ratio(1, 100) {
                "SUSPENDED".into()
            } else {
                active()
            },
        });
    }
    for j in 0..groups {
        let kind = if j % 10 == 9 {
            "APP_GROUP"
        } else {
            "OKTA_GROUP"
        };
        out.groups.push(group(
            &format!("00g{:017}", j + 1),
            &format!("group-{}", j + 1),
            kind,
            &[],
        ));
    }
    out.groups
        .push(group("00g1everyone00000006", "Everyone", "BUILT_IN", &[]));
    if groups > 0 {
        for u in 0..users {
            let k = rng.gen_range(1..=5);
            for _ in 0..k {
                let g = rng.gen_range(0..groups);
                let members = &mut out.groups[g].members;
                let uid = &out.users[u].id;
                if members.last() != Some(uid) {
                    members.push(uid.clone());
                }
            }
        }
    }
    for a in 0..10 {
        let mut app = SeedApp {
            id: format!("0oa{:017}", a + 1),
            name: Some("bookmark".into()),
            label: format!("app-{}", a + 1),
            status: active(),
            users: vec![],
            groups: vec![],
        };
        if groups > 0 {
            for _ in 0..2 {
                app.groups
                    .push(out.groups[rng.gen_range(0..groups)].id.clone());
            }
        }
        if users > 0 {
            for _ in 0..20 {
                app.users
                    .push(out.users[rng.gen_range(0..users)].id.clone());
            }
        }
        out.apps.push(app);
    }
    out
}
