//! Prints the generated CRD (handy while editing the types).
fn main() {
    print!("{}", sluice_api::crd_yaml().expect("crd serializes"));
}
