// RUN: parse-print --debug-locations %s | filecheck %s
// RUN: roundtrip %s

// The text of roundtrip.mlir after `mlir-opt --allow-unregistered-dialect
// --mlir-print-local-scope --mlir-print-debuginfo` (MLIR 19): MLIR renames
// parameters to %argN, prints `return`, typed ints (`1 : i64`), `%e` floats,
// the unit shorthand `{axes}`, and locations on parameters and returns.  It
// reads back to the same IR.

// CHECK:       module attributes {dl.model = {name = "mlp", optimizer = {learning_rate = 0.001, name = "rmsprop"}}} {
// CHECK-NEXT:    func.func @predict(%arg0: tensor<784x10xf32>, %arg1: tensor<10xf32>, %arg2: tensor<?x784xf32, "N">) -> (tensor<?x10xf32, "N"> {dl.name = "probs"}) {
// CHECK-NEXT:      %0 = "dl.matmul"(%arg2, %arg0) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N"> loc("model.dl":17:5)
// CHECK-NEXT:      %1 = "dl.add"(%0, %arg1) : (tensor<?x10xf32, "N">, tensor<10xf32>) -> tensor<?x10xf32, "N"> loc("model.dl":18:5)
// CHECK-NEXT:      %2 = "dl.softmax"(%1) {axis = -1} : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N"> loc("model.dl":19:5)
// CHECK-NEXT:      func.return %2 : tensor<?x10xf32, "N">
// CHECK-NEXT:    } loc("model.dl":16:3)
// CHECK-NEXT:    func.func @loss(%arg0: tensor<784x10xf32>, %arg1: tensor<?x784xf32, "N">, %arg2: tensor<?xi64, "N">) -> (tensor<f32> {dl.name = "loss"}, tensor<?xi64, "N">) {
// CHECK-NEXT:      %0 = "dl.matmul"(%arg1, %arg0)
// CHECK-NEXT:      %1 = "dl.sparse_categorical_crossentropy"(%0, %arg2) {from_logits = true}
// CHECK-NEXT:      %2 = "dl.constant"() {dtype = f32, shape = [], value = dense<0.5> : tensor<f64>} : () -> tensor<f32> loc("model.dl":36:5)
// CHECK-NEXT:      %3 = "dl.mul"(%1, %2)
// CHECK-NEXT:      %4 = "dl.constant"() {dtype = f32, shape = [2, 2], value = dense<[[1.0, -0.0], [1.0e-07, 0.1]]> : tensor<2x2xf32>} : () -> tensor<2x2xf32> loc("model.dl":38:5)
// CHECK-NEXT:      %5 = "dl.argmax"(%0) {axis = 1, keepdims = false}
// CHECK-NEXT:      %6 = "dl.sum"(%4) {axes = unit, keepdims = false}
// CHECK-NEXT:      func.return %3, %5 : tensor<f32>, tensor<?xi64, "N">
// CHECK-NEXT:    } loc("model.dl":33:3)
// CHECK-NEXT:    func.func @nothing() -> () {
// CHECK-NEXT:      func.return
// CHECK-NEXT:    } loc("model.dl":58:3)
// CHECK-NEXT:  }

module attributes {dl.model = {name = "mlp", optimizer = {learning_rate = 1.000000e-03 : f64, name = "rmsprop"}}} {
  func.func @predict(%arg0: tensor<784x10xf32> loc("model.mlir":2:22), %arg1: tensor<10xf32> loc("model.mlir":2:46), %arg2: tensor<?x784xf32, "N"> loc("model.mlir":2:66)) -> (tensor<?x10xf32, "N"> {dl.name = "probs"}) {
    %0 = "dl.matmul"(%arg2, %arg0) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N"> loc("model.dl":17:5)
    %1 = "dl.add"(%0, %arg1) : (tensor<?x10xf32, "N">, tensor<10xf32>) -> tensor<?x10xf32, "N"> loc("model.dl":18:5)
    %2 = "dl.softmax"(%1) {axis = -1 : i64} : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N"> loc("model.dl":19:5)
    return %2 : tensor<?x10xf32, "N"> loc("model.mlir":6:5)
  } loc("model.dl":16:3)
  func.func @loss(%arg0: tensor<784x10xf32> loc("model.mlir":8:19), %arg1: tensor<?x784xf32, "N"> loc("model.mlir":8:43), %arg2: tensor<?xi64, "N"> loc("model.mlir":8:71)) -> (tensor<f32> {dl.name = "loss"}, tensor<?xi64, "N">) {
    %0 = "dl.matmul"(%arg1, %arg0) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N"> loc("model.dl":34:5)
    %1 = "dl.sparse_categorical_crossentropy"(%0, %arg2) {from_logits = true} : (tensor<?x10xf32, "N">, tensor<?xi64, "N">) -> tensor<f32> loc("model.dl":35:5)
    %2 = "dl.constant"() {dtype = f32, shape = [], value = dense<5.000000e-01> : tensor<f64>} : () -> tensor<f32> loc("model.dl":36:5)
    %3 = "dl.mul"(%1, %2) : (tensor<f32>, tensor<f32>) -> tensor<f32> loc("model.dl":37:5)
    %4 = "dl.constant"() {dtype = f32, shape = [2, 2], value = dense<[[1.000000e+00, -0.000000e+00], [1.000000e-07, 1.000000e-01]]> : tensor<2x2xf32>} : () -> tensor<2x2xf32> loc("model.dl":38:5)
    %5 = "dl.argmax"(%0) {axis = 1 : i64, keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<?xi64, "N"> loc("model.dl":39:5)
    %6 = "dl.sum"(%4) {axes, keepdims = false} : (tensor<2x2xf32>) -> tensor<f32> loc("model.dl":40:5)
    return %3, %5 : tensor<f32>, tensor<?xi64, "N"> loc("model.mlir":16:5)
  } loc("model.dl":33:3)
  func.func @nothing() {
    return loc("model.mlir":23:5)
  } loc("model.dl":58:3)
} loc("model.mlir":1:1)
