// RUN: dlc opt %s --passes default --debug-locations --check-each-pass | filecheck %s
// RUN: dlc opt %s --passes autodiff --debug-locations | filecheck %s --check-prefix=RAW

// The default pipeline (autodiff, canonicalize, cse, dce) over a function and
// a gradient placeholder.  The `- 0.0` goes, and the gradient of sum(y * y)
// -- seeded with a broadcast 1 -- shrinks to y + y; gradient ops keep the
// location of the forward op they come from, marked "backward".
// --check-each-pass compares @f before and after each pass and checks @df
// against finite differences when autodiff builds it.

// CHECK-LABEL: func.func @f
// CHECK-NEXT:    %0 = "dl.mul"(%x, %w) {{.*}} loc("g.dl":2:13 to 2:18)
// CHECK-NEXT:    %1 = "dl.mul"(%0, %0) {{.*}} loc("g.dl":3:16 to 3:21)
// CHECK-NEXT:    %2 = "dl.sum"(%1)
// CHECK-LABEL: func.func @df
// CHECK-NEXT:    %0 = "dl.mul"(%x, %w) {{.*}} loc("g.dl":2:13 to 2:18)
// CHECK-NEXT:    %1 = "dl.add"(%0, %0) {{.*}} loc("backward"("g.dl":3:16 to 3:21))
// CHECK-NEXT:    %2 = "dl.mul"(%1, %x) {{.*}} loc("backward"("g.dl":2:13 to 2:18))
// CHECK-NEXT:    %3 = "dl.sum"(%2) {axes = [0], keepdims = false} {{.*}} loc("backward"("g.dl":2:13 to 2:18))
// CHECK-NEXT:    func.return %3 : tensor<3xf32>

// Before canonicalization the backward code still holds the seed and its broadcast.
// RAW-LABEL: func.func @df
// RAW:         "dl.broadcast_to"
// RAW-SAME:    loc("backward"(
module {
  func.func @f(%x: tensor<?x3xf32, "N">, %w: tensor<3xf32>) -> (tensor<f32>) {
    %0 = "dl.mul"(%x, %w) : (tensor<?x3xf32, "N">, tensor<3xf32>) -> tensor<?x3xf32, "N"> loc("g.dl":2:13 to 2:18)
    %1 = "dl.constant"() {dtype = f32, shape = [], value = dense<0.0> : tensor<f64>} : () -> tensor<f32> loc("g.dl":2:21 to 2:24)
    %2 = "dl.sub"(%0, %1) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N"> loc("g.dl":2:13 to 2:24)
    %3 = "dl.mul"(%2, %2) : (tensor<?x3xf32, "N">, tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N"> loc("g.dl":3:16 to 3:21)
    %4 = "dl.sum"(%3) {axes = unit, keepdims = false} : (tensor<?x3xf32, "N">) -> tensor<f32> loc("g.dl":3:12 to 3:22)
    func.return %4 : tensor<f32>
  } loc("g.dl":1:4 to 1:5)
  func.func @df(%x: tensor<?x3xf32, "N">, %w: tensor<3xf32>) -> () attributes {grad_of = {fn = "f", with_value = false, wrt = ["w"]}} {
    func.return
  } loc("g.dl":5:4 to 5:6)
}
