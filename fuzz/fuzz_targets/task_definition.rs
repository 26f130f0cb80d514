//! RegisterTaskDefinition's input path: JSON body -> `TaskDefinitionInput`
//! (serde, as the handler does) -> `validate::task_definition` and the tag
//! rules.
//!
//! Properties: validation is deterministic (same spec or same error
//! twice); an accepted definition has a task size Fargate offers, at least
//! one container and ephemeral storage in 21..=200 GiB; its spec survives
//! the store's serialize -> deserialize -> serialize unchanged.
#![no_main]

use ferry_control::model::task_definition::TaskDefSpec;
use ferry_control::validate;
use ferry_control::wire::task_definition::TaskDefinitionInput;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn run(body: &Map<String, Value>) -> Result<String, String> {
    let input: TaskDefinitionInput =
        serde_json::from_value(Value::Object(body.clone())).map_err(|e| format!("serde: {e}"))?;
    let spec = validate::task_definition(&input).map_err(|e| format!("{e:?}"))?;
    validate::check_tags(&input.tags).map_err(|e| format!("{e:?}"))?;
    assert!(
        validate::fargate_size_ok(spec.cpu_units, spec.memory_mib),
        "accepted a task size Fargate does not offer: {} CPU, {} MiB",
        spec.cpu_units,
        spec.memory_mib
    );
    assert!(
        !spec.containers.is_empty(),
        "accepted a task without containers"
    );
    if let Some(g) = spec.ephemeral_storage_gib {
        assert!(
            (21..=200).contains(&g),
            "accepted {g} GiB of ephemeral storage"
        );
    }
    let stored = serde_json::to_string(&spec).map_err(|e| format!("serialize: {e}"))?;
    let back: TaskDefSpec = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("a stored spec does not load back: {e}\n{stored}"));
    let again = serde_json::to_string(&back).unwrap_or_default();
    assert_eq!(stored, again, "the spec changes through the store");
    Ok(stored)
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let first = run(&body);
    let second = run(&body);
    assert_eq!(first, second, "validation is not deterministic");
});
