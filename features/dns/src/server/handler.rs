//! The request handler: cluster names from the index, everything else through the forwarder.
//!
//! This is the normal path for every query. Over UDP, its cluster-zone responses also fill the
//! response cache the fast path answers repeated questions from (see [`super::udp`]).

use std::time::Instant;

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::DnsState;
use crate::answer::{Lookup, answer};
use crate::forward::{ForwardError, Question};
use crate::metrics::{Outcome, Zone};

/// Answers requests from the shared state.
#[derive(Debug, Clone)]
pub struct Handler {
    pub(super) state: DnsState,
}

/// What handling a request did.
pub(super) struct Handled {
    pub(super) zone: Zone,
    pub(super) outcome: Outcome,
    pub(super) info: ResponseInfo,
    /// The response depends only on the request bytes and the index and zone config of this
    /// generation (a cluster-zone answer made from memory, over UDP): it may be cached.
    pub(super) cacheable: Option<u64>,
}

/// A response to send.
struct Reply<'a> {
    rcode: ResponseCode,
    authoritative: bool,
    authentic_data: bool,
    answers: &'a [Record],
    authorities: &'a [Record],
    additionals: &'a [Record],
}

// === impl Reply ===

impl Reply<'_> {
    fn error(rcode: ResponseCode) -> Reply<'static> {
        Reply {
            rcode,
            authoritative: false,
            authentic_data: false,
            answers: &[],
            authorities: &[],
            additionals: &[],
        }
    }

    fn outcome(&self) -> Outcome {
        match self.rcode {
            ResponseCode::NoError if self.answers.is_empty() => Outcome::NoData,
            ResponseCode::NoError => Outcome::Success,
            ResponseCode::NXDomain => Outcome::NxDomain,
            ResponseCode::ServFail => Outcome::ServFail,
            ResponseCode::Refused => Outcome::Refused,
            _ => Outcome::Other,
        }
    }
}

// === impl Handler ===

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let handled = self.handle(request, response).await;
        self.state
            .metrics()
            .record(handled.zone, handled.outcome, start.elapsed());
        handled.info
    }
}

impl Handled {
    fn new(zone: Zone, outcome: Outcome, info: ResponseInfo) -> Handled {
        Handled {
            zone,
            outcome,
            info,
            cacheable: None,
        }
    }
}

impl Handler {
    /// A handler answering from `state`.
    pub fn new(state: DnsState) -> Handler {
        Handler { state }
    }

    pub(super) async fn handle<R: ResponseHandler>(
        &self,
        request: &Request,
        response: R,
    ) -> Handled {
        if request.metadata.op_code != OpCode::Query {
            let info = send(request, response, Reply::error(ResponseCode::NotImp)).await;
            return Handled::new(Zone::Forward, Outcome::Other, info);
        }
        let Ok(info) = request.request_info() else {
            let info = send(request, response, Reply::error(ResponseCode::FormErr)).await;
            return Handled::new(Zone::Forward, Outcome::Other, info);
        };
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            let info = send(request, response, Reply::error(ResponseCode::BADVERS)).await;
            return Handled::new(Zone::Forward, Outcome::Other, info);
        }
        let query = info.query;
        let qname = query.original().name();
        let (qtype, qclass) = (query.query_type(), query.query_class());
        let forwarder = self.state.forwarder();
        if forwarder.is_loop_probe(qname) {
            self.state.metrics().loop_detected();
            let info = send(request, response, Reply::error(ResponseCode::ServFail)).await;
            return Handled::new(Zone::Forward, Outcome::ServFail, info);
        }
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let tcp = request.protocol() == Protocol::Tcp;
        // The generation is read under the index lock, with the zone config: it names exactly
        // the state this answer is computed from (writers bump it under the write lock).
        let (lookup, generation) = {
            let index = self.state.read_index();
            let zone = self.state.zone();
            let generation = self.state.generation();
            (answer(&index, &zone, qname, qtype, qclass), generation)
        };
        match lookup {
            Lookup::Answer(mut a) => {
                let cacheable = (a.chase.is_none() && request.protocol() == Protocol::Udp)
                    .then_some(generation);
                if let Some(target) = a.chase.take() {
                    let q = Question {
                        name: target,
                        qtype,
                        qclass,
                        dnssec_ok,
                    };
                    // The CNAME alone is a valid answer: the client resolves the target itself.
                    if let Ok(f) = forwarder.resolve(&q, tcp).await {
                        a.answers.extend(f.answer.answers);
                    }
                }
                let reply = Reply {
                    rcode: a.rcode,
                    authoritative: a.authoritative,
                    authentic_data: false,
                    answers: &a.answers,
                    authorities: &a.authority,
                    additionals: &a.additionals,
                };
                let outcome = reply.outcome();
                let info = send(request, response, reply).await;
                Handled {
                    cacheable,
                    ..Handled::new(Zone::Cluster, outcome, info)
                }
            }
            Lookup::Forward => {
                let q = Question {
                    name: qname.clone(),
                    qtype,
                    qclass,
                    dnssec_ok,
                };
                match forwarder.resolve(&q, tcp).await {
                    Ok(f) => {
                        self.state.metrics().cache(f.cached);
                        let additionals: Vec<Record> = f
                            .answer
                            .additionals
                            .into_iter()
                            .filter(|r| r.record_type() != RecordType::OPT)
                            .collect();
                        let reply = Reply {
                            rcode: f.answer.rcode,
                            authoritative: false,
                            authentic_data: f.answer.authentic_data
                                && (dnssec_ok || request.metadata.authentic_data),
                            answers: &f.answer.answers,
                            authorities: &f.answer.authorities,
                            additionals: &additionals,
                        };
                        let outcome = reply.outcome();
                        let info = send(request, response, reply).await;
                        Handled::new(Zone::Forward, outcome, info)
                    }
                    Err(error) => {
                        let rcode = if error == ForwardError::Overloaded {
                            self.state.metrics().overloaded();
                            ResponseCode::Refused
                        } else {
                            tracing::debug!(%error, name = %qname, %qtype, "forwarding failed");
                            ResponseCode::ServFail
                        };
                        let reply = Reply::error(rcode);
                        let outcome = reply.outcome();
                        let info = send(request, response, reply).await;
                        Handled::new(Zone::Forward, outcome, info)
                    }
                }
            }
        }
    }
}

/// The EDNS section of our response: present when the request had one (RFC 6891).
fn response_edns(request: &Request, rcode: ResponseCode) -> Option<Edns> {
    let req = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_max_payload(req.max_payload().max(512));
    edns.set_version(0);
    edns.set_dnssec_ok(req.flags().dnssec_ok);
    edns.set_rcode_high(rcode.high());
    Some(edns)
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    reply: Reply<'_>,
) -> ResponseInfo {
    let edns = response_edns(request, reply.rcode);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = reply.authoritative;
    metadata.recursion_available = true;
    metadata.authentic_data = reply.authentic_data;
    metadata.response_code = reply.rcode;
    let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
    let message = builder.build(
        metadata,
        reply.answers.iter(),
        reply.authorities.iter(),
        std::iter::empty(),
        reply.additionals.iter(),
    );
    match response.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending a DNS response failed");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}
