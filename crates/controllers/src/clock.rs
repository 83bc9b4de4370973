//! Time as an input: controllers ask a `Clock`, so tests can move time without sleeping.

use k8s_openapi::jiff::Timestamp;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until a test moves it.
#[cfg(test)]
pub struct FixedClock(pub std::sync::Mutex<Timestamp>);

#[cfg(test)]
impl FixedClock {
    pub fn at(seconds: i64) -> Self {
        Self(std::sync::Mutex::new(
            Timestamp::from_second(seconds).expect("valid test time"),
        ))
    }
}

#[cfg(test)]
impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}
