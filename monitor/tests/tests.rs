//! Integration tests of the monitor library: the rules on crafted and
//! benign histories.

mod rules;
mod witness;
