//! rcron-alerts: the sinks through which the leader master tells people
//! that a run failed or timed out (email over SMTP, Slack-compatible and
//! generic JSON webhooks), with storm control.
//!
//! Not implemented yet: the sinks arrive with the HA-masters-and-alerting
//! work. Until then workers already record every failure and timeout as a
//! warning under `/cron/warn/<job>/<runId>` (see `rcron_shared::Warning`),
//! where the keys wait — nothing is lost — for the leader's alert loop.
