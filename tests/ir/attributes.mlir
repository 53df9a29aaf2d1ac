// RUN: parse-print %s | filecheck %s
// RUN: roundtrip %s

// Every kind of attribute value, in its printed (canonical) form.  Module
// attributes carry the `dl.` prefix; keys print sorted.

// CHECK:      module attributes {
// CHECK-SAME: dl.bools = [true, false]
// CHECK-SAME: dl.dtypes = [f32, f64, i32, i64, i1]
// CHECK-SAME: dl.empty_dict = {}
// CHECK-SAME: dl.empty_list = []
// CHECK-SAME: dl.floats = [0.1, 1.0e-07, -0.0, 1.0, 2.5e+20, 1.7976931348623157e+308, 5.0e-324]
// CHECK-SAME: dl.ints = [0, -3, 9223372036854775807, -9223372036854775808, 123456789012345678901234567890 : i128, 16]
// CHECK-SAME: dl.mixed_dims = ["N", 784]
// CHECK-SAME: dl.nested = {inner = {k = [[1, 2], [3]]}, "key with space" = "v"}
// CHECK-SAME: dl.nonfinite = [0x7FF0000000000000 : f64, 0xFFF0000000000000 : f64, 0x7FF8000000000000 : f64]
// CHECK-SAME: dl.strings = ["", "quote \" backslash \\ newline \n tab \t", "\C3\A9\E2\82\AC", "\01"]
// CHECK-SAME: dl.type = tensor<?x3xf32, "B">
// CHECK-SAME: dl.units = [unit, unit]
// CHECK-SAME: } {
module attributes {
  dl.ints = [0, -3, 9223372036854775807, -9223372036854775808, 123456789012345678901234567890, 16 : i64],
  dl.floats = [0.1, 1.0e-7, -0.0, 1.000000e+00 : f64, 2.5E20, 1.7976931348623157e308, 4.9406564584124654E-324],
  dl.nonfinite = [0x7FF0000000000000 : f64, 0xFFF0000000000000 : f64, 0x7FF8000000000000 : f64],
  dl.bools = [true, false],
  dl.units = [unit, unit],
  dl.strings = ["", "quote \" backslash \\ newline \n tab \t", "é\E2\82\AC", "\01"],
  dl.dtypes = [f32, f64, i32, i64, i1],
  dl.mixed_dims = ["N", 784],
  dl.type = tensor<?x3xf32, "B">,
  dl.nested = {inner = {k = [[1, 2], [3]]}, "key with space" = "v"},
  dl.empty_list = [],
  dl.empty_dict = {}
} {
  // Dense arrays keep their element type and every bit of every element;
  // equal elements print as a splat, non-finite floats as hex bits.
  // CHECK-LABEL: func.func @dense() -> ()
  // CHECK-SAME:  a_f32 = dense<[[1.0, 2.0], [0.1, -0.0]]> : tensor<2x2xf32>
  // CHECK-SAME:  b_f64 = dense<[0.1, 1.0e-07]> : tensor<2xf64>
  // CHECK-SAME:  c_i64 = dense<[9223372036854775807, -1]> : tensor<2xi64>
  // CHECK-SAME:  d_i32 = dense<[[1], [2], [3]]> : tensor<3x1xi32>
  // CHECK-SAME:  e_i1 = dense<[true, false, true]> : tensor<3xi1>
  // CHECK-SAME:  f_splat = dense<0.0> : tensor<4x5xf32>
  // CHECK-SAME:  g_scalar = dense<7> : tensor<i64>
  // CHECK-SAME:  h_empty = dense<> : tensor<2x0xf32>
  // CHECK-SAME:  i_nonfinite = dense<[0x7F800000, 0xFF800000, 0x7FC00000, 1.0]> : tensor<4xf32>
  // CHECK-SAME:  j_hex_bytes = dense<[1.0, 2.0]> : tensor<2xf32>
  // CHECK-SAME:  k_f16 = dense<[0.1, 6.55e+04]> : tensor<2xf16>
  // CHECK-SAME:  l_ui8 = dense<[0, 255]> : tensor<2xui8>
  // CHECK-SAME:  m_int_in_float = dense<[1.0, 2.0]> : tensor<2xf32>
  // CHECK-SAME:  n_splat_list = dense<1> : tensor<1x2xi32>
  // CHECK-SAME:  } {
  func.func @dense() -> () attributes {
      a_f32 = dense<[[1.0, 2.0], [0.1, -0.0]]> : tensor<2x2xf32>,
      b_f64 = dense<[0.1, 1.0e-7]> : tensor<2xf64>,
      c_i64 = dense<[9223372036854775807, -1]> : tensor<2xi64>,
      d_i32 = dense<[[1], [2], [3]]> : tensor<3x1xi32>,
      e_i1 = dense<[true, false, 1]> : tensor<3xi1>,
      f_splat = dense<0.0> : tensor<4x5xf32>,
      g_scalar = dense<7> : tensor<i64>,
      h_empty = dense<[[], []]> : tensor<2x0xf32>,
      i_nonfinite = dense<[0x7F800000, 0xFF800000, 0x7FC00000, 1.0]> : tensor<4xf32>,
      j_hex_bytes = dense<"0x0000803F00000040"> : tensor<2xf32>,
      k_f16 = dense<[0.1, 65504.0]> : tensor<2xf16>,
      l_ui8 = dense<[0, 255]> : tensor<2xui8>,
      m_int_in_float = dense<[1, 2]> : tensor<2xf32>,
      n_splat_list = dense<[[1, 1]]> : tensor<1x2xi32>} {
    func.return
  }

  // `{flag}` is MLIR's shorthand for a unit attribute (None).
  // CHECK-LABEL: func.func @unit_shorthand() -> () attributes {flag = unit, "quoted key" = 1} {
  func.func @unit_shorthand() -> () attributes {flag, "quoted key" = 1} {
    func.return
  }
}
