//! Gives the shared library a soname, so that programs linked against one ABI version
//! keep loading a compatible `libauthcore.so.0` and packagers can install it versioned.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libauthcore.so.0");
    }
}
