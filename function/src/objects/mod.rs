//! Pictures stored in S3: the objects an S3 event, a Batch Operations task
//! or `catdog predict s3://…` names, fetched, classified by the same
//! pipeline as an HTTP request (the same limits, decoding and batcher), and
//! their answers written back where the rest of AWS can read them: object
//! tags and/or a JSON record under the results prefix.
//!
//! - [`location`]: an object's address, and the URL-encoded keys events carry;
//! - [`results`]: which results are written, where, and the tag merge;
//! - [`record`]: the JSON record (a wire type: also its schema);
//! - [`failure`]: why one object failed, and whether trying again may help;
//! - [`store`]: the S3 calls, their errors sorted into those two kinds;
//! - [`worker`]: one object from its address to its written answer;
//! - [`stored_pictures`]: the HTTP API's way in (`/uploads`, `/predict {"s3": …}`).

pub(crate) mod failure;
pub(crate) mod location;
pub(crate) mod record;
pub(crate) mod results;
pub(crate) mod store;
pub(crate) mod stored_pictures;
pub(crate) mod worker;

pub(crate) use failure::{Failure, FailureCode};
pub(crate) use location::ObjectRef;
pub(crate) use results::ResultsConfig;
pub(crate) use stored_pictures::{
    uploads_off, S3StoredPictures, StoredPictures, UploadRequest, UploadTicket, UPLOAD_TYPES,
};
pub use worker::{ObjectWorker, Outcome};
