//! One module per ECS operation or small group of operations. Each defines
//! its request and response wire types (botocore's shapes) and handlers of
//! the form `fn(&Arc<Core>, &RequestContext, Request) -> Result<Response, EcsError>`.

pub mod account_settings;
pub mod capacity_providers;
pub mod clusters;
pub mod describe_tasks;
pub mod list_tasks;
pub mod run_task;
pub mod services;
pub mod stop_task;
pub mod tags;
pub mod task_definitions;
pub mod task_protection;
