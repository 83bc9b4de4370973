//! All of r8s's end-to-end tests in one binary: each test file linked separately cost a full
//! debug link of r8s and its dependencies (time and gigabytes of disk per file).

mod common;

mod admission;
mod admission_policies;
mod batch_and_sets;
mod certificates;
mod cli;
mod conversion;
mod crd_schema_combinators;
mod crd_validation_rules;
mod crd_versions;
mod crds;
mod default_rbac;
mod deletion;
mod devcluster;
mod gc_custom_resources;
mod helm;
mod job_policies;
mod join;
mod kube_rs;
mod kubectl;
mod kubelet;
mod lb_pool;
mod node_and_service_controllers;
mod node_authorizer;
mod overload;
mod pod_security;
mod rbac;
mod rbac_escalation;
mod scheduler;
mod server_side_apply;
mod serviceaccount_tokens;
mod sim;
mod toolchain;
mod webhooks;
mod workloads;
