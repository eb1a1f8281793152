//! bioseg-infer's errors as the package's exceptions (`bioseg._errors`): the message is the
//! CLI's one line (the error and its causes), the class says what kind of problem it is.

use bioseg_data::DataError;
use bioseg_infer::InferError;
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;

/// The exception classes of `bioseg._errors` this module raises.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Arguments or data that do not fit (`ValueError` too).
    Input,
    /// A model that cannot be loaded or run (`ValueError` too).
    Model,
    /// A file that does not exist (`FileNotFoundError` too).
    NotFound,
    /// A file that cannot be read or written (`OSError` too).
    Data,
    /// The engine failed while running (`RuntimeError` too).
    Run,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Input => "InputError",
            Kind::Model => "ModelError",
            Kind::NotFound => "FileNotFound",
            Kind::Data => "DataError",
            Kind::Run => "RunError",
        }
    }
}

/// An exception of `kind` with `message`.
pub(crate) fn raise(kind: Kind, message: String) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("bioseg._errors")
            .and_then(|m| m.getattr(kind.class_name()))
            .and_then(|class| class.call1((message,)));
        match made {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        }
    })
}

/// An [`Kind::Input`] exception.
pub(crate) fn input_error(message: String) -> PyErr {
    raise(Kind::Input, message)
}

/// The exception of an engine error; an interrupted run is Python's `KeyboardInterrupt`.
pub(crate) fn infer_error(e: InferError) -> PyErr {
    let message = bioseg_data::cli_support::error_line(&e);
    let kind = match e.root() {
        InferError::Cancelled => return PyKeyboardInterrupt::new_err(message),
        InferError::Data(DataError::Read { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            Kind::NotFound
        }
        InferError::Input(_) => Kind::Input,
        InferError::Model { .. } | InferError::Onnx(_) | InferError::Package(_) => Kind::Model,
        InferError::Data(_) | InferError::Json(_) => Kind::Data,
        InferError::Run(_) | InferError::Context { .. } => Kind::Run,
    };
    raise(kind, message)
}
