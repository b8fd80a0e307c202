//! The seeded Okta org's ids (okta-sim's default seed), under one name each, and how a test
//! broker talks to okta-sim.

use jit_broker::okta::OktaAuthMethod;
use jit_broker::Config;

pub const ALICE: &str = "00u1alice00000000001";
pub const BOB: &str = "00u1bob0000000000002";
pub const CAROL: &str = "00u1carol00000000003";
pub const DAVE: &str = "00u1dave000000000004";

pub const PROD_ADMINS: &str = "00g1prodadmins000001";
pub const DB_OWNERS: &str = "00g1dbowners00000002";
pub const ON_CALL: &str = "00g1oncall0000000003";
pub const ENGINEERING: &str = "00g1engineering00004";
/// An app group: the one whose members get aws-prod through a group assignment.
pub const APP_GROUP: &str = "00g1appgroup00000005";

pub const PAYROLL: &str = "0oa1payroll000000001";
pub const AWS_PROD: &str = "0oa1awsprod000000002";

pub const CUSTOM_ROLE: &str = "cr0custom00000000001";
pub const RESOURCE_SET: &str = "iam1resourceset00001";

/// The super-admin API token okta-sim accepts.
pub const SIM_TOKEN: &str = "sim-super-admin-token";

/// Points `config`'s Okta client at okta-sim (`base_url`) with the super-admin SSWS token.
pub fn okta_config(config: &mut Config, base_url: &str) {
    config.okta.base_url = base_url.to_string();
    config.okta.auth = OktaAuthMethod::Ssws;
    config.okta.api_token = Some(secrecy::SecretString::from(SIM_TOKEN));
}
