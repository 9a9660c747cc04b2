//! An object-safe view of a [`KvStore`], for handles that must not be
//! generic over the store (a `Session` in request extensions, extractors).

use bytes::Bytes;
use futures_util::future;

use super::{CasOutcome, Entry, KvStore, ListOptions, ListPage, PutOptions, StoreError, Version};

/// A boxed store future.
type BoxFuture<'a, T> = future::BoxFuture<'a, Result<T, StoreError>>;

/// The [`KvStore`] operations behind a trait object. Every `KvStore` is one.
pub(crate) trait DynStore: Send + Sync + 'static {
    /// [`KvStore::get`].
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Entry>>;
    /// [`KvStore::get_now`].
    fn get_now(&self, key: &str) -> Option<Result<Option<Entry>, StoreError>>;
    /// [`KvStore::put`].
    fn put<'a>(&'a self, key: &'a str, value: Bytes, options: PutOptions)
        -> BoxFuture<'a, Version>;
    /// [`KvStore::delete`].
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool>;
    /// [`KvStore::list`].
    fn list(&self, options: ListOptions) -> BoxFuture<'_, ListPage>;
    /// [`KvStore::insert_if_absent`].
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions,
    ) -> BoxFuture<'a, Option<Version>>;
    /// [`KvStore::compare_and_swap`].
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
        value: Bytes,
        options: PutOptions,
    ) -> BoxFuture<'a, CasOutcome>;
}

impl<S: KvStore> DynStore for S {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Entry>> {
        Box::pin(KvStore::get(self, key))
    }

    fn get_now(&self, key: &str) -> Option<Result<Option<Entry>, StoreError>> {
        KvStore::get_now(self, key)
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions,
    ) -> BoxFuture<'a, Version> {
        Box::pin(KvStore::put(self, key, value, options))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(KvStore::delete(self, key))
    }

    fn list(&self, options: ListOptions) -> BoxFuture<'_, ListPage> {
        Box::pin(KvStore::list(self, options))
    }

    fn insert_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions,
    ) -> BoxFuture<'a, Option<Version>> {
        Box::pin(KvStore::insert_if_absent(self, key, value, options))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<Version>,
        value: Bytes,
        options: PutOptions,
    ) -> BoxFuture<'a, CasOutcome> {
        Box::pin(KvStore::compare_and_swap(
            self, key, expected, value, options,
        ))
    }
}
