/// Gives a closed enum its wire label in one place, so `as_str`, `Display`, `FromStr` and `ALL`
/// cannot disagree with each other. Serde's own renames are checked against `as_str` in tests,
/// because serde attributes are what `JsonSchema` reads.
///
/// Parsing is case-insensitive because these values arrive from query strings and CLI flags
/// typed by people; the error names the API field so HTTP can answer 422 directly.
macro_rules! labelled_enum {
    ($ty:ident, $field:literal, { $($variant:ident => $label:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order the API documents them.
            pub const ALL: [$ty; labelled_enum!(@count $($variant)+)] = [$($ty::$variant),+];

            /// The label used on the wire (JSON, query strings, database text columns).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $label),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::DomainError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let wanted = s.trim();
                Self::ALL
                    .into_iter()
                    .find(|value| value.as_str().eq_ignore_ascii_case(wanted))
                    .ok_or_else(|| {
                        let labels: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        $crate::DomainError::invalid(
                            $field,
                            format!("must be one of {}", labels.join(", ")),
                        )
                    })
            }
        }
    };
    (@count $($variant:ident)+) => { 0 $(+ labelled_enum!(@one $variant))+ };
    (@one $variant:ident) => { 1 };
}

/// Wires an event enum whose variants each wrap a payload struct of the same name.
///
/// Listing the variants here once yields the payload constants, `From` conversions, the
/// `DomainEvent` impl and the schema list. The generated matches are exhaustive, so a variant
/// added to the enum but not here is a compile error rather than an event missing from
/// `event_schemas()` or reported with the wrong type.
macro_rules! domain_events {
    ($enum:ident for $aggregate:ty { $($variant:ident => $version:literal),+ $(,)? }) => {
        $(
            impl $crate::event::EventPayload for $variant {
                const EVENT_TYPE: &'static str = stringify!($variant);
                const EVENT_VERSION: &'static str = $version;
            }

            impl From<$variant> for $enum {
                fn from(payload: $variant) -> Self {
                    $enum::$variant(payload)
                }
            }
        )+

        impl ::cqrs_es::DomainEvent for $enum {
            fn event_type(&self) -> String {
                match self {
                    $($enum::$variant(_) => <$variant as $crate::event::EventPayload>::EVENT_TYPE),+
                }
                .to_owned()
            }

            fn event_version(&self) -> String {
                match self {
                    $($enum::$variant(_) => <$variant as $crate::event::EventPayload>::EVENT_VERSION),+
                }
                .to_owned()
            }
        }

        impl $enum {
            /// JSON schemas of every payload this aggregate can emit, for docs and consumers.
            pub fn schemas() -> Vec<$crate::schema::EventSchema> {
                vec![$(
                    $crate::schema::EventSchema::of::<$variant>(
                        <$aggregate as ::cqrs_es::Aggregate>::TYPE,
                    )
                ),+]
            }
        }
    };
}
