//! What the validators enforce, stated in `/openapi.json`. Each fragment here is built from the
//! constant or grammar its validator uses (`limits`, [`crate::patterns`], the core's names).
//! Query parameters take theirs with `#[param(schema_with = ...)]`; [`refine`] puts the
//! fragments of request bodies on their fields ([`FIELDS`], keeping each field's description)
//! and adds the rules that join fields (a `noop` task has no argv, a schedule has exactly one
//! trigger, ...). The validators stay the judges and say what is wrong; this only describes
//! them.

use serde_json::{json, Value};
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Components, Ref, RefOr};
use utoipa::Number;

use crate::{duration, limits, patterns};

type Fragment = RefOr<Schema>;

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// `builder`, also allowing `null` (an absent optional field).
fn nullable(builder: ObjectBuilder, ty: Type) -> ObjectBuilder {
    builder.schema_type(SchemaType::from_iter([ty, Type::Null]))
}

fn opt_string(pattern: String) -> Fragment {
    nullable(string().pattern(Some(pattern)), Type::String).into()
}

/// An integer in `min..=max`, the bounds exact (not rounded to a float).
fn integer(min: u64, max: u64) -> ObjectBuilder {
    let exact = |n: u64| Number::UInt(usize::try_from(n).unwrap_or(usize::MAX));
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(exact(min)))
        .maximum(Some(exact(max)))
}

fn enumeration<'a>(values: impl IntoIterator<Item = &'a str>, null: bool) -> Fragment {
    let mut values: Vec<Value> = values.into_iter().map(Value::from).collect();
    let ty = if null {
        values.push(Value::Null);
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(ty)
        .enum_values(Some(values))
        .into()
}

// ---- names and ids ----

/// A name: queue, kind, schedule, workflow, resource, label.
pub fn name() -> Fragment {
    string().pattern(Some(patterns::name())).into()
}

pub fn opt_name() -> Fragment {
    opt_string(patterns::name())
}

pub fn token_name() -> Fragment {
    string().pattern(Some(patterns::token_name())).into()
}

pub fn task_id() -> Fragment {
    string().pattern(Some(patterns::task_id())).into()
}

/// A task id, or empty for none (the event stream's `task`).
pub fn task_id_or_empty() -> Fragment {
    let p = format!("^(?:|{})$", patterns::uuid_body());
    string().pattern(Some(p)).into()
}

/// Free text of 1 to [`limits::MAX_NAME`] characters: idempotency and routing keys.
pub fn opt_key() -> Fragment {
    nullable(
        string()
            .min_length(Some(1))
            .max_length(Some(limits::MAX_NAME))
            // No NUL: PostgreSQL's text cannot hold one.
            .pattern(Some("^[^\\u0000]*$")),
        Type::String,
    )
    .into()
}

/// A token's namespaces: namespace names, at most [`crate::auth::MAX_TOKEN_NAMESPACES`].
pub fn token_namespaces() -> Fragment {
    let name = string()
        .pattern(Some(crate::namespace::NAMESPACE_PATTERN))
        .max_length(Some(crate::namespace::MAX_NAMESPACE));
    ArrayBuilder::new()
        .items(name)
        .max_items(Some(crate::auth::MAX_TOKEN_NAMESPACES))
        .into()
}

/// Any text of at most [`limits::MAX_NAME`] characters (filters of the event stream).
pub fn filter_text() -> Fragment {
    string().max_length(Some(limits::MAX_NAME)).into()
}

// ---- times and durations ----

fn duration_at_least(min_ms: u64) -> Fragment {
    opt_string(duration::pattern(min_ms))
}

/// A duration: a whole number and a unit (`500ms`, `30s`, `10m`, `12h`, `7d`), at most 365 days.
pub fn opt_duration() -> Fragment {
    duration_at_least(0)
}

/// A positive duration.
pub fn opt_positive_duration() -> Fragment {
    duration_at_least(1)
}

/// A duration of at least one second (a fixed rate).
pub fn opt_every() -> Fragment {
    duration_at_least(1000)
}

fn date_time() -> ObjectBuilder {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

/// An RFC 3339 time.
pub fn time() -> Fragment {
    date_time().into()
}

pub fn opt_time() -> Fragment {
    nullable(date_time(), Type::String).into()
}

/// A duration (counted from now) or an RFC 3339 time.
fn duration_or_time(null: bool) -> Fragment {
    let ty = if null {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    AnyOfBuilder::new()
        .schema_type(ty)
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .pattern(Some(duration::pattern(0))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .into()
}

pub fn opt_deadline() -> Fragment {
    duration_or_time(true)
}

pub fn since() -> Fragment {
    duration_or_time(false)
}

// ---- numbers ----

/// Any `u32`.
pub fn opt_u32() -> Fragment {
    nullable(integer(0, u32::MAX as u64), Type::Integer).into()
}

/// A backlog limit: 0 (none) to `limits::MAX_QUEUED`.
pub fn opt_max_queued() -> Fragment {
    nullable(integer(0, limits::MAX_QUEUED), Type::Integer).into()
}

pub fn u32_any() -> Fragment {
    integer(0, u32::MAX as u64).into()
}

/// Any `u64`.
pub fn u64_any() -> Fragment {
    integer(0, u64::MAX).into()
}

pub fn opt_retries() -> Fragment {
    nullable(integer(0, limits::MAX_RETRIES as u64), Type::Integer).into()
}

/// A page size: 1 to [`limits::MAX_PAGE`].
pub fn page() -> Fragment {
    integer(1, limits::MAX_PAGE as u64).into()
}

/// A page of the audit log: 1 to [`crate::audit::MAX_AUDIT_LIMIT`].
pub fn audit_page() -> Fragment {
    integer(1, crate::audit::MAX_AUDIT_LIMIT as u64).into()
}

pub fn opt_max_catch_up() -> Fragment {
    let max = drover_core::schedule::MAX_CATCH_UP as u64;
    nullable(integer(1, max), Type::Integer).into()
}

// ---- a task's command and placement ----

/// Text without a NUL character.
fn no_nul() -> ObjectBuilder {
    string().pattern(Some(r"^[^\x00]*$"))
}

/// The command and its arguments: no NUL, a non-empty program, at most [`limits::MAX_ARGV`].
pub fn argv() -> Fragment {
    ArrayBuilder::new()
        .items(no_nul())
        .prefix_items([no_nul().min_length(Some(1)).build()])
        .max_items(Some(limits::MAX_ARGV))
        .into()
}

/// Environment variables: names without `=` or NUL, values without NUL.
pub fn env() -> Fragment {
    ObjectBuilder::new()
        .property_names(Some(string().pattern(Some(r"^[^=\x00]+$"))))
        .additional_properties(Some(no_nul()))
        .max_properties(Some(limits::MAX_ENV))
        .into()
}

/// Secret environment variables: variable names, values of at most
/// [`limits::MAX_SECRET_BYTES`] characters without NUL.
pub fn secret_env() -> Fragment {
    ObjectBuilder::new()
        .property_names(Some(string().pattern(Some(patterns::env_name()))))
        .additional_properties(Some(no_nul().max_length(Some(limits::MAX_SECRET_BYTES))))
        .max_properties(Some(limits::MAX_SECRETS))
        .into()
}

/// Resources by name, each a `u64`.
pub fn resources() -> Fragment {
    ObjectBuilder::new()
        .property_names(Some(string().pattern(Some(patterns::name()))))
        .additional_properties(Some(integer(0, u64::MAX)))
        .into()
}

/// Amounts by name, each a `u64` (what a task or worker holds, as views show it).
pub fn u64_map() -> Fragment {
    ObjectBuilder::new()
        .additional_properties(Some(integer(0, u64::MAX)))
        .into()
}

pub fn opt_selector() -> Fragment {
    nullable(
        string()
            .pattern(Some(patterns::selector()))
            .max_length(Some(limits::MAX_SPEC_BYTES)),
        Type::String,
    )
    .into()
}

fn strategies() -> impl Iterator<Item = &'static str> {
    drover_core::Strategy::ALL.iter().map(|s| s.as_str())
}

pub fn opt_strategy() -> Fragment {
    enumeration(strategies(), true)
}

/// A strategy of a workflow node: any but `broadcast` (a node is one task).
pub fn opt_node_strategy() -> Fragment {
    enumeration(strategies().filter(|s| *s != "broadcast"), true)
}

/// A queue's default strategy; `""` removes it.
pub fn opt_queue_strategy() -> Fragment {
    enumeration(std::iter::once("").chain(strategies()), true)
}

/// Upstream task ids.
pub fn after() -> Fragment {
    ArrayBuilder::new()
        .items(task_id())
        .max_items(Some(crate::flow::MAX_AFTER))
        .into()
}

/// Upstream node names of a workflow node.
pub fn node_after() -> Fragment {
    ArrayBuilder::new()
        .items(name())
        .max_items(Some(drover_core::dag::MAX_EDGES_PER_NODE))
        .into()
}

pub fn opt_upstream_policy() -> Fragment {
    enumeration(["skip", "run"], true)
}

pub fn opt_overlap() -> Fragment {
    use drover_core::schedule::Overlap;
    enumeration(Overlap::ALL.iter().map(|o| o.as_str()), true)
}

pub fn opt_misfire() -> Fragment {
    use drover_core::schedule::Misfire;
    enumeration(Misfire::ALL.iter().map(|m| m.as_str()), true)
}

pub fn opt_cron() -> Fragment {
    opt_string(patterns::cron())
}

/// IANA time zone names.
pub fn opt_tz() -> Fragment {
    enumeration(drover_core::schedule::time_zones(), true)
}

// ---- lists and documents ----

/// The tasks of a batch: 1 to [`limits::MAX_BATCH`].
pub fn batch_tasks() -> Fragment {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("SubmitRequest"))
        .min_items(Some(1))
        .max_items(Some(limits::MAX_BATCH))
        .into()
}

/// The nodes of a workflow: 1 to `dag::MAX_NODES`.
pub fn workflow_tasks() -> Fragment {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("WorkflowTaskRequest"))
        .min_items(Some(1))
        .max_items(Some(drover_core::dag::MAX_NODES))
        .into()
}

/// `true`, the only value this version takes.
pub fn only_true() -> Fragment {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .into()
}

/// Up to [`crate::auth::MAX_WORKER_LIMITS`] kinds.
pub fn worker_kinds() -> Fragment {
    ArrayBuilder::new()
        .items(string())
        .max_items(Some(crate::auth::MAX_WORKER_LIMITS))
        .into()
}

/// Up to [`crate::auth::MAX_WORKER_LIMITS`] labels.
pub fn worker_labels() -> Fragment {
    ObjectBuilder::new()
        .additional_properties(Some(string()))
        .max_properties(Some(crate::auth::MAX_WORKER_LIMITS))
        .into()
}

// ---- events and webhooks ----

pub fn webhook_url() -> Fragment {
    string()
        .pattern(Some(patterns::webhook_url()))
        .max_length(Some(crate::events::MAX_WEBHOOK_URL))
        .into()
}

/// Event patterns (`*`, `TYPE.*`, `TYPE.STATE`), each item a comma-separated list of them.
pub fn webhook_events() -> Fragment {
    let list = patterns::comma_list(&crate::events::event_patterns());
    ArrayBuilder::new()
        .items(string().pattern(Some(list)))
        .max_items(Some(crate::events::MAX_PATTERNS))
        .into()
}

/// A webhook secret: printable ASCII without spaces.
pub fn opt_webhook_secret() -> Fragment {
    use crate::events::{MAX_SECRET, MIN_SECRET};
    opt_string(format!("^[!-~]{{{MIN_SECRET},{MAX_SECRET}}}$"))
}

/// States of events, comma separated.
pub fn event_states() -> Fragment {
    let names = crate::events::state_names()
        .map(String::from)
        .collect::<Vec<_>>();
    string().pattern(Some(patterns::comma_list(&names))).into()
}

/// Types of events, comma separated.
pub fn event_types() -> Fragment {
    let names = crate::events::EVENT_TYPES.map(String::from);
    string().pattern(Some(patterns::comma_list(&names))).into()
}

/// An event sequence number, or empty for none (`Last-Event-ID`).
pub fn last_event_id() -> Fragment {
    let p = format!("^(?:|{})$", duration::int_range_pattern(0, u64::MAX));
    string().pattern(Some(p)).into()
}

/// An event's seq as text (an SSE `id:`).
pub fn seq_text() -> Fragment {
    let p = format!("^(?:{})$", duration::int_range_pattern(0, u64::MAX));
    string().pattern(Some(p)).into()
}

/// An event's type (an SSE `event:`).
pub fn event_type() -> Fragment {
    enumeration(crate::events::EVENT_TYPES, false)
}

/// An event as JSON (an SSE `data:`).
pub fn event_data() -> Fragment {
    let mut data = string().content_media_type("application/json").build();
    let schema = json!({"$ref": "#/components/schemas/EventView"});
    data.extensions
        .get_or_insert_with(Default::default)
        .insert("contentSchema".into(), schema);
    data.into()
}

pub fn task_state() -> Fragment {
    enumeration(
        drover_core::TaskState::ALL.iter().map(|s| s.as_str()),
        false,
    )
}

// ---- the rules that join fields ----

/// A body field's constraints: (schema, field, fragment).
pub type Field = (&'static str, &'static str, fn() -> Fragment);

/// The constraints of body fields.
pub const FIELDS: &[Field] = &[
    ("SubmitRequest", "queue", opt_name),
    ("SubmitRequest", "kind", opt_name),
    ("SubmitRequest", "argv", argv),
    ("SubmitRequest", "env", env),
    ("SubmitRequest", "secret_env", secret_env),
    ("SubmitRequest", "retries", opt_retries),
    ("SubmitRequest", "backoff", opt_duration),
    ("SubmitRequest", "timeout", opt_positive_duration),
    ("SubmitRequest", "delay", opt_duration),
    ("SubmitRequest", "idempotency_key", opt_key),
    ("SubmitRequest", "label_selector", opt_selector),
    ("SubmitRequest", "strategy", opt_strategy),
    ("SubmitRequest", "key", opt_key),
    ("SubmitRequest", "concurrency_key", opt_key),
    ("SubmitRequest", "resources", resources),
    ("SubmitRequest", "spread_label", opt_name),
    ("SubmitRequest", "after", after),
    ("SubmitRequest", "on_upstream_failure", opt_upstream_policy),
    ("SubmitRequest", "at", opt_time),
    ("SubmitRequest", "deadline", opt_deadline),
    ("BatchSubmitRequest", "tasks", batch_tasks),
    ("QueueSetRequest", "concurrency", opt_u32),
    ("QueueSetRequest", "strategy", opt_queue_strategy),
    ("QueueSetRequest", "max_queued", opt_max_queued),
    ("WorkflowRequest", "name", name),
    ("WorkflowRequest", "tasks", workflow_tasks),
    ("WorkflowTaskRequest", "name", name),
    ("WorkflowTaskRequest", "after", node_after),
    ("WorkflowTaskRequest", "argv", argv),
    ("WorkflowTaskRequest", "env", env),
    ("WorkflowTaskRequest", "secret_env", secret_env),
    ("WorkflowTaskRequest", "retries", opt_retries),
    ("WorkflowTaskRequest", "backoff", opt_duration),
    ("WorkflowTaskRequest", "timeout", opt_positive_duration),
    ("WorkflowTaskRequest", "kind", opt_name),
    ("WorkflowTaskRequest", "queue", opt_name),
    ("WorkflowTaskRequest", "strategy", opt_node_strategy),
    ("WorkflowTaskRequest", "label_selector", opt_selector),
    ("WorkflowTaskRequest", "key", opt_key),
    (
        "WorkflowTaskRequest",
        "on_upstream_failure",
        opt_upstream_policy,
    ),
    ("RerunRequest", "from_failed", only_true),
    ("ScheduleRequest", "name", name),
    ("ScheduleRequest", "cron", opt_cron),
    ("ScheduleRequest", "tz", opt_tz),
    ("ScheduleRequest", "every", opt_every),
    (
        "ScheduleRequest",
        "delay_after_previous",
        opt_positive_duration,
    ),
    ("ScheduleRequest", "overlap", opt_overlap),
    ("ScheduleRequest", "misfire", opt_misfire),
    ("ScheduleRequest", "max_catch_up", opt_max_catch_up),
    // A scheduled task has no upstreams, times or serial line of its own.
    ("ScheduleRequest", "task", template),
    ("BackfillRequest", "from", time),
    ("BackfillRequest", "to", time),
    ("TokenCreate", "name", token_name),
    ("TokenCreate", "expires_in", opt_positive_duration),
    ("TokenCreate", "namespaces", token_namespaces),
    ("WorkerLimits", "kinds", worker_kinds),
    ("WorkerLimits", "labels", worker_labels),
    ("WebhookCreate", "url", webhook_url),
    ("WebhookCreate", "events", webhook_events),
    ("WebhookCreate", "secret", opt_webhook_secret),
    // Views: the ranges of unsigned numbers (the derive says int32 and int64).
    ("QueueView", "concurrency", opt_u32),
    ("QueueView", "max_queued", opt_max_queued),
    ("TaskView", "resources", u64_map),
    ("WorkerView", "resources", u64_map),
    ("WorkerView", "resources_free", u64_map),
    ("SseFrame", "id", seq_text),
    ("SseFrame", "event", event_type),
    ("SseFrame", "data", event_data),
];

/// Puts each of [`FIELDS`] on its field (with the field's description), and adds the rules
/// between fields of one request, which a field's own schema cannot state.
pub fn refine(components: &mut Components) {
    for (schema, field, fragment) in FIELDS {
        let obj = object(components, schema);
        let Some(old) = obj.properties.get(*field) else {
            panic!("{schema} has no field {field}");
        };
        let described = describe(fragment(), description(old));
        obj.properties.insert(field.to_string(), described);
    }
    object(components, "RerunRequest")
        .required
        .push("from_failed".into());
    let noop = spec_rule();
    let submit = json!([
        noop,
        {
            "if": {"properties": {"on_upstream_failure": {"type": "string"}},
                   "required": ["on_upstream_failure"]},
            "then": {"required": ["after"], "properties": {"after": {"minItems": 1}}}
        },
        {
            "if": {"properties": {"serial": {"const": true}}, "required": ["serial"]},
            "then": {"required": ["key"], "properties": {"key": {"type": "string"}}}
        },
        {
            "if": {"properties": {"at": {"type": "string"}}, "required": ["at"]},
            "then": {"properties": {"delay": {"type": "null"}}}
        },
        {
            "if": {"properties": {"max_concurrent": {"type": "integer"}},
                   "required": ["max_concurrent"]},
            "then": {"required": ["concurrency_key"],
                     "properties": {"concurrency_key": {"type": "string"}}}
        }
    ]);
    add(components, "SubmitRequest", "allOf", submit);
    add(components, "WorkflowTaskRequest", "allOf", json!([noop]));
    let trigger = |given: &str, tz: bool| {
        let mut props = serde_json::Map::new();
        for t in ["cron", "every", "delay_after_previous"] {
            let ty = if t == given { "string" } else { "null" };
            props.insert(t.into(), json!({"type": ty}));
        }
        if !tz {
            props.insert("tz".into(), json!({"type": "null"}));
        }
        json!({"required": [given], "properties": props})
    };
    let triggers = json!([
        trigger("cron", true),
        trigger("every", false),
        trigger("delay_after_previous", false)
    ]);
    add(components, "ScheduleRequest", "oneOf", triggers);
    let one = |given: &str, other: &str| {
        json!({"required": [given],
               "properties": {given: {"type": "string"}, other: {"type": "null"}}})
    };
    let login = json!([one("token", "code"), one("code", "token")]);
    add(components, "SessionCreate", "oneOf", login);
}

/// What a task runs: with an argv, a command (not `noop`, no payload); without, a task run
/// in the worker (`noop`, or a handler of `kind`): a kind, and no env, secret env or cwd. Two
/// branches only: Schemathesis's canonical form of the whole request stops at a few dozen.
fn spec_rule() -> Value {
    json!({
        "if": {"required": ["argv"], "properties": {"argv": {"minItems": 1}}},
        "then": {"properties": {"kind": {"not": {"const": "noop"}}, "payload": false}},
        "else": {
            "required": ["kind"],
            "properties": {
                "kind": {"type": "string"},
                "secret_env": {"maxProperties": 0},
                "env": {"maxProperties": 0},
                "cwd": {"type": "null"}
            }
        }
    })
}

/// The task of a schedule: a submit request without `after`, `at`, `delay`, `deadline`,
/// `on_upstream_failure` and `serial`.
fn template() -> Fragment {
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let without = ObjectBuilder::new()
        .property("after", ArrayBuilder::new().max_items(Some(0)))
        .property("at", null())
        .property("delay", null())
        .property("deadline", null())
        .property("on_upstream_failure", null())
        // The schedule's own `namespace` says where its tasks run.
        .property("namespace", null())
        .property(
            "serial",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
                .enum_values(Some([Value::Bool(false), Value::Null])),
        );
    AllOfBuilder::new()
        .item(Ref::from_schema_name("SubmitRequest"))
        .item(without)
        .into()
}

fn object<'a>(components: &'a mut Components, name: &str) -> &'a mut Object {
    match components.schemas.get_mut(name) {
        Some(RefOr::T(Schema::Object(obj))) => obj,
        _ => panic!("no object schema {name} to refine"),
    }
}

/// Adds `keyword` (`allOf`, `oneOf`) with `value` to the object schema `name`.
fn add(components: &mut Components, name: &str, keyword: &str, value: Value) {
    object(components, name)
        .extensions
        .get_or_insert_with(Default::default)
        .insert(keyword.into(), value);
}

fn description(schema: &Fragment) -> Option<String> {
    match schema {
        RefOr::T(Schema::Object(o)) => o.description.clone(),
        RefOr::T(Schema::Array(a)) => a.description.clone(),
        RefOr::T(Schema::AllOf(a)) => a.description.clone(),
        RefOr::T(Schema::AnyOf(a)) => a.description.clone(),
        RefOr::T(Schema::OneOf(o)) => o.description.clone(),
        _ => None,
    }
}

fn describe(mut schema: Fragment, text: Option<String>) -> Fragment {
    if let RefOr::T(s) = &mut schema {
        let slot = match s {
            Schema::Object(o) => &mut o.description,
            Schema::Array(a) => &mut a.description,
            Schema::AllOf(a) => &mut a.description,
            Schema::AnyOf(a) => &mut a.description,
            Schema::OneOf(o) => &mut o.description,
            _ => return schema,
        };
        if slot.is_none() {
            *slot = text;
        }
    }
    schema
}
