//! Property tests of compose-style interpolation.

use std::collections::HashMap;

use proptest::prelude::*;
use zenkoctl::stack::interpolate::{interpolate, InterpolationError};

fn lookup(map: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |k| map.get(k).cloned()
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,12}"
}

proptest! {
    #[test]
    fn text_without_dollars_is_unchanged(s in "[^$]*") {
        let env = HashMap::new();
        prop_assert_eq!(interpolate(&s, &lookup(&env)).unwrap().value, s);
    }

    #[test]
    fn escaped_dollars_come_back_literally(s in ".*") {
        let env = HashMap::new();
        let escaped = s.replace('$', "$$");
        prop_assert_eq!(interpolate(&escaped, &lookup(&env)).unwrap().value, s);
    }

    #[test]
    fn set_variables_are_substituted(var in name(), value in "[^$]*", pre in "[^$]*", post in "[^$]*") {
        let env = HashMap::from([(var.clone(), value.clone())]);
        let text = format!("{pre}${{{var}}}{post}");
        prop_assert_eq!(interpolate(&text, &lookup(&env)).unwrap().value, format!("{pre}{value}{post}"));
        // With a default, a set non-empty variable still wins.
        if !value.is_empty() {
            let text = format!("${{{var}:-fallback}}");
            prop_assert_eq!(interpolate(&text, &lookup(&env)).unwrap().value, value);
        }
    }

    #[test]
    fn defaults_apply_to_unset_variables(var in name(), default in "[^${}]*") {
        let env = HashMap::new();
        for form in [":-", "-"] {
            let text = format!("${{{var}{form}{default}}}");
            prop_assert_eq!(interpolate(&text, &lookup(&env)).unwrap().value, default.clone());
        }
    }

    #[test]
    fn required_unset_variables_fail_naming_the_variable(var in name(), message in "[^${}]*") {
        let env = HashMap::new();
        for form in [":?", "?"] {
            let text = format!("${{{var}{form}{message}}}");
            match interpolate(&text, &lookup(&env)) {
                Err(InterpolationError::Required { variable, message: m }) => {
                    prop_assert_eq!(&variable, &var);
                    prop_assert_eq!(&m, &message);
                }
                other => prop_assert!(false, "expected a required error, got {:?}", other),
            }
        }
    }

    #[test]
    fn interpolation_never_panics(s in ".*", value in ".*") {
        let env = HashMap::from([("A".to_string(), value)]);
        let _ = interpolate(&s, &lookup(&env));
    }
}
