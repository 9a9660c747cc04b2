//! axum extractors for what the layers put in request extensions, written
//! once: `T` (a 500 naming the missing layer, as axum answers a missing
//! extension) and `Option<T>`.

/// Makes `$ty`, put in request extensions by `$layer`, an axum extractor.
macro_rules! extension_extractor {
    ($ty:ty, $layer:literal) => {
        impl<S: Send + Sync> axum::extract::FromRequestParts<S> for $ty {
            type Rejection = (http::StatusCode, &'static str);

            async fn from_request_parts(
                parts: &mut http::request::Parts,
                _: &S,
            ) -> Result<Self, Self::Rejection> {
                parts.extensions.get::<$ty>().cloned().ok_or((
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    concat!(stringify!($ty), " extractor used without ", $layer),
                ))
            }
        }

        impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for $ty {
            type Rejection = std::convert::Infallible;

            async fn from_request_parts(
                parts: &mut http::request::Parts,
                _: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                Ok(parts.extensions.get::<$ty>().cloned())
            }
        }
    };
}

extension_extractor!(crate::session::Session, "tower_kv::session::SessionLayer");
extension_extractor!(crate::flags::Flags, "tower_kv::flags::FeatureFlagsLayer");
extension_extractor!(crate::abtest::Variants, "tower_kv::abtest::AbTestLayer");
extension_extractor!(
    crate::identity::UserId,
    "tower_kv::session::SessionLayer::expose_user (or your own authentication)"
);
