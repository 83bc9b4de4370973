//! Address pools the API server hands out: Service ClusterIPs from the service CIDR and node
//! ports from the node port range. A claim is a store create on a key of its own, so two
//! Services can never win the same address however their requests interleave; ClusterIPs are
//! recorded as `networking.k8s.io/v1` IPAddress objects, as upstream records them.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use r8s_api::Resource;
use r8s_api::kinds::{Allocation, Pool};
use r8s_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::objects;
use crate::status::ApiError;

/// Random probes before a pool is declared full.
const ATTEMPTS: usize = 256;
const NODE_PORTS_PREFIX: &str = "/registry/r8s.io/nodeports";
const IP_ADDRESSES_PREFIX: &str = "/registry/networking.k8s.io/ipaddresses";

#[derive(Clone)]
pub struct Allocator {
    store: Arc<dyn Store>,
    service_cidr: (Ipv4Addr, u8),
    node_ports: RangeInclusive<u16>,
}

/// An address an object holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub pool: Pool,
    pub value: String,
}

/// Who holds a claim.
pub struct Owner<'a> {
    pub resource: &'a Resource,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

fn random_u64() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

impl Allocator {
    pub fn new(
        store: Arc<dyn Store>,
        service_cidr: (Ipv4Addr, u8),
        node_ports: RangeInclusive<u16>,
    ) -> Self {
        Self {
            store,
            service_cidr,
            node_ports,
        }
    }

    fn key(pool: Pool, value: &str) -> String {
        match pool {
            Pool::ServiceIp => format!("{IP_ADDRESSES_PREFIX}/{value}"),
            Pool::NodePort => format!("{NODE_PORTS_PREFIX}/{value}"),
        }
    }

    fn range_text(&self, pool: Pool) -> String {
        match pool {
            Pool::ServiceIp => format!("{}/{}", self.service_cidr.0, self.service_cidr.1),
            Pool::NodePort => format!("{}-{}", self.node_ports.start(), self.node_ports.end()),
        }
    }

    /// Checks a requested value is inside its pool.
    fn in_range(&self, pool: Pool, value: &str) -> bool {
        match pool {
            Pool::ServiceIp => value.parse::<Ipv4Addr>().is_ok_and(|ip| {
                let (network, bits) = self.service_cidr;
                let size = 1u64 << (32 - bits);
                let offset = u64::from(u32::from(ip)).wrapping_sub(u64::from(u32::from(network)));
                offset > 0 && offset < size - 1
            }),
            Pool::NodePort => value
                .parse::<u16>()
                .is_ok_and(|p| self.node_ports.contains(&p)),
        }
    }

    fn random_value(&self, pool: Pool) -> String {
        match pool {
            Pool::ServiceIp => {
                let (network, bits) = self.service_cidr;
                let usable = (1u64 << (32 - bits)) - 2;
                let offset = 1 + random_u64() % usable;
                Ipv4Addr::from(u32::from(network) + offset as u32).to_string()
            }
            Pool::NodePort => {
                let span = u64::from(self.node_ports.end() - self.node_ports.start()) + 1;
                (u64::from(*self.node_ports.start()) + random_u64() % span).to_string()
            }
        }
    }

    fn record(pool: Pool, value: &str, owner: &Owner) -> Value {
        let parent = json!({
            "group": owner.resource.group,
            "resource": owner.resource.plural,
            "namespace": owner.namespace,
            "name": owner.name,
        });
        match pool {
            Pool::ServiceIp => json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "IPAddress",
                "metadata": {
                    "name": value,
                    "uid": objects::new_uid(),
                    "creationTimestamp": objects::now_rfc3339(),
                    "generation": 1,
                    "labels": {
                        "ipaddress.kubernetes.io/ip-family": "IPv4",
                        "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
                    },
                },
                "spec": { "parentRef": parent },
            }),
            Pool::NodePort => parent,
        }
    }

    /// Claims what `wanted` asks for, except values `held` already has, writing chosen values
    /// into `object`. On error nothing stays claimed.
    pub async fn claim(
        &self,
        object: &mut Value,
        wanted: &[Allocation],
        held: &[Claim],
        owner: &Owner<'_>,
        kind: &str,
    ) -> Result<Vec<Claim>, ApiError> {
        let mut claimed = Vec::new();
        for allocation in wanted {
            match self.claim_one(allocation, held, owner, kind).await {
                Ok((value, new)) => {
                    set_field(object, &allocation.field, allocation.pool, &value);
                    if new {
                        claimed.push(Claim {
                            pool: allocation.pool,
                            value,
                        });
                    }
                }
                Err(e) => {
                    self.release(&claimed).await;
                    return Err(e);
                }
            }
        }
        Ok(claimed)
    }

    async fn claim_one(
        &self,
        allocation: &Allocation,
        held: &[Claim],
        owner: &Owner<'_>,
        kind: &str,
    ) -> Result<(String, bool), ApiError> {
        let pool = allocation.pool;
        let field = allocation.field.join(".").replace(".0.", "[0].");
        let invalid = |message: String| {
            ApiError::invalid(
                owner.resource.kind,
                owner.resource.group,
                owner.name,
                vec![(field.clone(), message)],
            )
        };
        let what = match pool {
            Pool::ServiceIp => "IP",
            Pool::NodePort => "port",
        };
        if let Some(value) = &allocation.requested {
            if held.iter().any(|c| c.pool == pool && c.value == *value) {
                return Ok((value.clone(), false));
            }
            if !self.in_range(pool, value) {
                return Err(invalid(format!(
                    "Invalid value: {value:?}: failed to allocate {what} {value}: the provided {what} ({value}) is not in the valid range. The range of valid {what}s is {}",
                    self.range_text(pool)
                )));
            }
            let record = Self::record(pool, value, owner);
            return match self
                .store
                .create(&Self::key(pool, value), objects::encode(&record)?, None)
                .await
            {
                Ok(_) => Ok((value.clone(), true)),
                Err(StoreError::AlreadyExists { .. }) => Err(invalid(format!(
                    "Invalid value: {value:?}: failed to allocate {what} {value}: provided {what} is already allocated"
                ))),
                Err(e) => Err(ApiError::internal(e.to_string())),
            };
        }
        for _ in 0..ATTEMPTS {
            let value = self.random_value(pool);
            let record = Self::record(pool, &value, owner);
            match self
                .store
                .create(&Self::key(pool, &value), objects::encode(&record)?, None)
                .await
            {
                Ok(_) => return Ok((value, true)),
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
        }
        Err(ApiError::internal(format!(
            "{kind} {:?}: failed to allocate a {what}: the range {} is full",
            owner.name,
            self.range_text(pool)
        )))
    }

    /// Gives addresses back; a missing one is already free.
    pub async fn release(&self, claims: &[Claim]) {
        for claim in claims {
            if let Err(e) = self
                .store
                .delete(&Self::key(claim.pool, &claim.value), None)
                .await
                && !matches!(e, StoreError::NotFound { .. })
            {
                tracing::warn!(error = %e, value = %claim.value, "cannot release an address");
            }
        }
    }
}

/// The values an object's allocations currently hold.
pub fn held(wanted: &[Allocation], object: &Value) -> Vec<Claim> {
    wanted
        .iter()
        .filter_map(|a| {
            let mut node = object;
            for part in &a.field {
                node = match part.parse::<usize>() {
                    Ok(i) => &node[i],
                    Err(_) => &node[part.as_str()],
                };
            }
            let value = match node {
                Value::String(s) if !s.is_empty() && s != "None" => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(Claim {
                pool: a.pool,
                value,
            })
        })
        .collect()
}

fn set_field(object: &mut Value, field: &[String], pool: Pool, value: &str) {
    let mut node = object;
    for part in field {
        node = match part.parse::<usize>() {
            Ok(i) => &mut node[i],
            Err(_) => &mut node[part.as_str()],
        };
    }
    *node = match pool {
        Pool::ServiceIp => json!(value),
        Pool::NodePort => json!(value.parse::<u64>().unwrap_or_default()),
    };
}
