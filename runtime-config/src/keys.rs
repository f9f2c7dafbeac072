//! `declare_keys!`: the macro that turns the one declaration of every configuration key (in
//! `config.rs`) into everything that has to know the keys.
//!
//! An entry declares a key once:
//!
//! ```text
//! /// Doc comment (becomes the field's doc).
//! key_name: Type {
//!     serde(...),                  // optional: attributes of the RuntimeConfig field
//!     file_alias: other_name,      // optional: a second libpod.conf spelling (the key wins)
//!     engine: name,                // optional: the containers.conf [engine] key that sets it
//!     network: name,               // optional: the containers.conf [network] key that sets it
//!     rootless: inherit,           // optional: a rootless user inherits it from the system file
//!     flag: "long" "VALUE", set: setter(ArgType), resolved: field, help: "...",
//!                                  // optional: its global flag and RuntimeOptions setter;
//!                                  // `resolved` makes cleanup_args take the value from Resolved
//! } = default_expression;
//! ```
//!
//! and the macro derives from the entries, in declaration order (which is the serialisation
//! order): the [`RuntimeConfig`](crate::RuntimeConfig) struct and its `defaults`, the `Layer` a
//! `libpod.conf` is read into (and options and `containers.conf` are converted into) with the
//! code that applies a layer, the `containers.conf` views, `KEY_ORDER`,
//! [`ROOTLESS_INHERITED_KEYS`](crate::ROOTLESS_INHERITED_KEYS),
//! [`GLOBAL_FLAGS`](crate::GLOBAL_FLAGS), the [`RuntimeOptions`](crate::RuntimeOptions) struct
//! with its setters, and the flag arguments of [`Config::cleanup_args`](crate::Config::cleanup_args).
//!
//! How a value is merged, rejected or spelled as a flag argument depends on its type only
//! (`crate::value`).

macro_rules! declare_keys {
    (
        $(#[doc = $cfg_doc:literal])*
        pub struct RuntimeConfig;
        $(#[doc = $opt_doc:literal])*
        pub struct RuntimeOptions;
        $(#[doc = $defaults_doc:literal])*
        fn defaults($env:ident) { $($prelude:tt)* }
        $(
            $(#[doc = $doc:literal])*
            $key:ident : $ty:ty {
                $( serde($($serde:tt)*), )?
                $( file_alias: $alias:ident, )?
                $( engine: $engine:ident, )?
                $( network: $network:ident, )?
                $( rootless: $rootless:ident, )?
                $(
                    flag: $long:literal $vname:literal,
                    set: $setter:ident($($sig:tt)*),
                    $( resolved: $res:ident, )?
                    help: $help:literal,
                )?
            } = $default:expr;
        )*
    ) => {
        $(#[doc = $cfg_doc])*
        #[derive(Debug, Clone, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        pub struct RuntimeConfig {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])?
                pub $key: $ty,
            )*
        }

        impl RuntimeConfig {
            $(#[doc = $defaults_doc])*
            pub fn defaults($env: &$crate::ConfigEnv) -> Self {
                $($prelude)*
                RuntimeConfig { $( $key: $default, )* }
            }
        }

        /// One layer of settings, every key optional so that presence means "set here": a
        /// `libpod.conf` is read into one; options and `containers.conf` are converted into one.
        #[derive(Debug, Clone, Default, PartialEq, Eq, ::serde::Deserialize)]
        pub(crate) struct Layer {
            $( pub(crate) $key: Option<<$ty as $crate::value::KeyValue>::Raw>, )*
            // Second spellings: separate fields, not `#[serde(alias)]`, which rejects a file
            // holding both.
            $($( pub(crate) $alias: Option<<$ty as $crate::value::KeyValue>::Raw>, )?)*
        }

        impl Layer {
            /// Applies every key present (a key wins over its second spelling): merges it into
            /// `values` and records `source_of(key)` in `sources`. A key for which `source_of`
            /// gives `None` is skipped.
            pub(crate) fn apply(
                self,
                values: &mut RuntimeConfig,
                sources: &mut $crate::Sources,
                source_of: impl Fn(&'static str) -> Option<$crate::Source>,
            ) -> Result<(), $crate::ConfigError> {
                $(
                    if let Some(raw) = self.$key $( .or(self.$alias) )? {
                        if let Some(source) = source_of(stringify!($key)) {
                            $crate::value::KeyValue::merge(&mut values.$key, raw).map_err(|r| {
                                $crate::ConfigError::Invalid {
                                    key: stringify!($key),
                                    value: r.value,
                                    origin: source.clone(),
                                    reason: r.reason.to_owned(),
                                }
                            })?;
                            sources.set(stringify!($key), source);
                        }
                    }
                )*
                Ok(())
            }

            /// The layer a `containers.conf` gives.
            pub(crate) fn from_containers_conf(engine: RawEngine, network: RawNetwork) -> Layer {
                Layer {
                    $( $key: declare_keys!(@first $(engine.$engine)? $(network.$network)?), )*
                    $($( $alias: None, )?)*
                }
            }

            /// Sets the key of the global flag `long` from its argument; `None` when no key has
            /// that flag, `Some(Err(why))` when the argument does not parse.
            pub(crate) fn set_flag(
                &mut self,
                long: &str,
                arg: &::std::ffi::OsStr,
            ) -> Option<Result<(), String>> {
                match long {
                    $($(
                        $long => Some(
                            <declare_keys!(@arg_type $($sig)*) as $crate::value::FromFlag>
                                ::from_flag(arg)
                                .map(|v| self.$key = Some($crate::value::IntoRaw::into_raw(v))),
                        ),
                    )?)*
                    _ => None,
                }
            }
        }

        /// The `[engine]` keys of `containers.conf` that mean a `libpod.conf` key.
        #[derive(Debug, Default, ::serde::Deserialize)]
        pub(crate) struct RawEngine {
            $($( $engine: Option<<$ty as $crate::value::KeyValue>::Raw>, )?)*
        }

        /// The `[network]` keys of `containers.conf` that mean a `libpod.conf` key.
        #[derive(Debug, Default, ::serde::Deserialize)]
        pub(crate) struct RawNetwork {
            $($( $network: Option<<$ty as $crate::value::KeyValue>::Raw>, )?)*
        }

        /// Every key of [`RuntimeConfig`] in serialisation order.
        pub(crate) const KEY_ORDER: &[&str] = &[ $( stringify!($key), )* ];

        /// Keys a rootless user without a `libpod.conf` of their own inherits from the system
        /// file (libpod's partial fallback, reference §5.1 step 4).
        pub const ROOTLESS_INHERITED_KEYS: &[&str] = &[
            $($( declare_keys!(@name $key $rootless), )?)*
        ];

        /// Every global flag: `--config`, then the flag of each key that has one, in key order.
        pub const GLOBAL_FLAGS: &[$crate::GlobalFlag] = &[
            $crate::flags::CONFIG_FLAG,
            $($(
                $crate::GlobalFlag {
                    long: $long,
                    value_name: $vname,
                    help: $help,
                    kind: <declare_keys!(@arg_type $($sig)*) as $crate::value::FromFlag>::KIND,
                    key: Some(stringify!($key)),
                    option: stringify!($setter),
                },
            )?)*
        ];

        $(#[doc = $opt_doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct RuntimeOptions {
            pub(crate) config_path: Option<::std::path::PathBuf>,
            pub(crate) layer: Layer,
        }

        impl RuntimeOptions {
            $($(
                declare_keys!(@setter $key $long $help $setter ($($sig)*));
            )?)*
        }

        /// Appends, in key order, the global flags (and their arguments) that give another rpod
        /// process the values of `values`, taking the `resolved` ones from `resolved`. A key whose
        /// value is unset (an empty string, no lock name) is left out.
        pub(crate) fn push_flag_args(
            values: &RuntimeConfig,
            resolved: &$crate::Resolved<'_>,
            out: &mut Vec<String>,
        ) {
            $($(
                if let Some(arg) = declare_keys!(@flag_value values resolved $key $($res)?) {
                    out.push(concat!("--", $long).to_owned());
                    out.push(arg);
                }
            )?)*
        }
    };

    // The first of the given expressions (`containers.conf` keys), or `None`.
    (@first) => { None };
    (@first $($e:tt)+) => { $($e)+ };

    (@name $key:ident $($_:tt)*) => { stringify!($key) };

    // The argument type of a setter signature.
    (@arg_type impl Into<$t:ty>) => { $t };
    (@arg_type $t:ty) => { $t };

    (@flag_value $values:ident $resolved:ident $key:ident) => {
        { use $crate::value::FlagValue as _; $values.$key.flag_value() }
    };
    (@flag_value $values:ident $resolved:ident $key:ident $res:ident) => {
        { use $crate::value::FlagValue as _; $resolved.$res.flag_value() }
    };

    (@setter $key:ident $long:literal $help:literal $setter:ident (impl Into<$t:ty>)) => {
        #[doc = concat!("`--", $long, "`: ", $help)]
        #[must_use]
        pub fn $setter(mut self, value: impl Into<$t>) -> Self {
            let value: $t = value.into();
            self.layer.$key = Some($crate::value::IntoRaw::into_raw(value));
            self
        }
    };
    // A plain argument type, for numbers: with `impl Into<u32>` an unsuffixed literal
    // (`.num_locks(64)`) would infer as `i32`.
    (@setter $key:ident $long:literal $help:literal $setter:ident ($t:ty)) => {
        #[doc = concat!("`--", $long, "`: ", $help)]
        #[must_use]
        pub fn $setter(mut self, value: $t) -> Self {
            self.layer.$key = Some($crate::value::IntoRaw::into_raw(value));
            self
        }
    };
}
