//! [`LocalAdmission`]: the in-process limiter behind the domain's [`Admission`] trait, for a
//! single replica.

use std::sync::Arc;

use aiproxy_domain::{
    Admission, AdmissionError, AdmissionFuture, AdmissionRequest, Admitted, RateLimits, Rejection,
    StatusFuture, Ticket, UnixMillis, UsageCommit, UsageRecord, UsageStore, UserId,
};

use crate::{RateLimiter, Reservation};

/// Admission decided by a [`RateLimiter`] in this process, with usage rows written to any
/// [`UsageStore`] (SQLite in the server).
///
/// Exact for one process; several replicas need an engine that decides in a shared database
/// (`aiproxy-storage-postgres`).
#[derive(Clone)]
pub struct LocalAdmission {
    limiter: Arc<RateLimiter>,
    usage: Arc<dyn UsageStore>,
}

impl std::fmt::Debug for LocalAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAdmission")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl LocalAdmission {
    /// Admission over `limiter`, recording usage rows in `usage`.
    pub fn new(limiter: Arc<RateLimiter>, usage: Arc<dyn UsageStore>) -> Self {
        Self { limiter, usage }
    }

    /// The limiter (to restore its windows at start-up).
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }
}

impl Admission for LocalAdmission {
    fn admit(&self, request: AdmissionRequest) -> AdmissionFuture {
        let result = self
            .limiter
            .admit(
                &request.user,
                &request.limits,
                request.requested_completion_tokens,
                request.now,
            )
            .map(|reservation| Admitted {
                completion_budget: reservation.completion_budget(),
                status: *reservation.status(),
                ticket: Box::new(LocalTicket {
                    reservation,
                    usage: Arc::clone(&self.usage),
                }),
            })
            .map_err(AdmissionError::Refused);
        Box::pin(std::future::ready(result))
    }

    fn status(&self, user: &UserId, limits: &RateLimits, now: UnixMillis) -> StatusFuture {
        Box::pin(std::future::ready(Ok(self
            .limiter
            .status(user, limits, now))))
    }

    fn precheck(
        &self,
        user: &UserId,
        limits: &RateLimits,
        now: UnixMillis,
    ) -> Result<(), Rejection> {
        self.limiter.precheck(user, limits, now)
    }

    fn forget(&self, user: &UserId) {
        self.limiter.forget(user);
    }

    fn forget_all(&self) {
        self.limiter.forget_all();
    }
}

/// A [`Reservation`] and where its usage row goes. Dropping it drops the reservation, which
/// releases the slot and the reserved tokens.
struct LocalTicket {
    reservation: Reservation,
    usage: Arc<dyn UsageStore>,
}

impl Ticket for LocalTicket {
    fn finish(self: Box<Self>, record: UsageRecord) -> UsageCommit {
        let LocalTicket { reservation, usage } = *self;
        reservation.settle(record.total_tokens(), UnixMillis::now());
        usage.record_usage(record)
    }

    fn cancel(self: Box<Self>) {}
}
